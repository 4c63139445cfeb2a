"""MRdIB's bottleneck over every item for one training step (forward and backward), side by side.

On a graph backbone the bottleneck encodes every item each step, so its cost grows with the catalogue, not
the batch. Each row times the same step on the same tables, in turn, one round after another:

- `one elementwise pass`: x * y + 1 over one [n, d] table per modality; no bottleneck, the unit of
  memory traffic the other rows can be read in.
- `deterministic`: the bottleneck without sampling (z = mu; alpha_kl = 0).
- `stochastic`: the library's `ModalityBottleneck.encode`, sampled codes for every item, the batch rows'
  codes and the KL (TFP distributions), differentiated by autodiff: what training runs.
- `stochastic, no draw`: the same without the reparameterization noise (codes = mu): the draw's share.
- `stochastic, hand-written gradient`: the same function as `stochastic` with its backward pass written
  out under `tf.custom_gradient` (every [n, d] intermediate recomputed in one pass, the KL in closed
  form). Checked against the library's loss and gradients before timing.

    python benchmarks/bottleneck_step.py                                # tiktok's items, MGCN's widths
    python benchmarks/bottleneck_step.py --widths 256,128 --rounds 40   # wider codes (MMGCN's)

Ratios are against `stochastic`; medians over rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mrdib_tf.bottleneck import SIGMA_FLOOR, SPREAD_EPSILON, ModalityBottleneck, reparameterization_noise  # noqa: E402


def sampled_codes(h, rows, noise, kernel, bias, sigma_kernel, sigma_bias):
    """(codes [n, d], batch codes [r, d], KL) of the diagonal bottleneck with the codes' matched prior,
    as `ModalityBottleneck.encode` computes them, with the gradient written out."""
    floor = SIGMA_FLOOR
    rows_noise = tf.gather(noise, rows)
    count = tf.cast(tf.shape(rows)[0], h.dtype)

    @tf.custom_gradient
    def bottleneck(h, kernel, bias, sigma_kernel, sigma_bias):
        h_rows = tf.gather(h, rows)
        mu_rows = kernel * h_rows + bias
        center, variance = tf.nn.moments(mu_rows, axes=[0])
        spread = tf.sqrt(variance + SPREAD_EPSILON)
        t_rows = (mu_rows - center) / spread
        gate_rows = tf.sigmoid(sigma_kernel * t_rows + sigma_bias)
        sigma_rows = floor + (1.0 - floor) * gate_rows
        batch = t_rows + sigma_rows * rows_noise
        kl = tf.reduce_sum(-tf.math.log(sigma_rows) + 0.5 * (tf.square(sigma_rows) + tf.square(t_rows)) - 0.5) / count
        mu = kernel * h + bias
        t = (mu - center) / spread
        gate = tf.sigmoid(sigma_kernel * t + sigma_bias)
        sigma = floor + (1.0 - floor) * gate
        codes = mu + spread * sigma * noise

        def gradient(g_codes, g_batch, g_kl):
            slope = sigma_kernel / spread
            # every item: codes = mu + spread * sigma(t) * noise
            g_noise = g_codes * noise
            g_gate = g_noise * spread * (1.0 - floor) * gate * (1.0 - gate)
            g_mu = g_codes + g_gate * slope
            sum_mu_h, sum_mu, sum_gate_t, sum_gate, sum_noise_sigma = (
                tf.reduce_sum(x, 0) for x in (g_mu * h, g_mu, g_gate * t, g_gate, g_noise * sigma))
            # the batch rows: their codes and the KL
            weight = g_kl / count
            g_sigma_rows = g_batch * rows_noise + weight * (sigma_rows - 1.0 / sigma_rows)
            g_gate_rows = g_sigma_rows * (1.0 - floor) * gate_rows * (1.0 - gate_rows)
            g_t_rows = g_batch + weight * t_rows + g_gate_rows * sigma_kernel
            rows_gate_t, rows_gate, rows_t, rows_t_t = (
                tf.reduce_sum(x, 0) for x in (g_gate_rows * t_rows, g_gate_rows, g_t_rows, g_t_rows * t_rows))
            # the prior's center and spread are the batch rows' moments
            g_center = -slope * sum_gate - rows_t / spread
            g_spread = sum_noise_sigma - slope * sum_gate_t - rows_t_t / spread
            g_mu_rows = g_t_rows / spread + (g_center + g_spread * t_rows) / count
            g_h = g_mu * kernel + tf.scatter_nd(rows[:, None], g_mu_rows * kernel, tf.shape(h))
            return (g_h, sum_mu_h + tf.reduce_sum(g_mu_rows * h_rows, 0), sum_mu + tf.reduce_sum(g_mu_rows, 0),
                    sum_gate_t + rows_gate_t, sum_gate + rows_gate)

        return (codes, batch, kl), gradient

    return bottleneck(h, kernel, bias, sigma_kernel, sigma_bias)


def step_functions(n_items: int, n_rows: int, widths: list[int], seed: int = 0) -> dict:
    """Every row's compiled step; each returns (loss, gradients) of a loss reading all three outputs."""
    rng = np.random.default_rng(seed)
    tables = [tf.Variable(rng.standard_normal((n_items, w)).astype(np.float32)) for w in widths]
    rows = tf.constant(rng.integers(0, n_items, n_rows).astype(np.int32))
    layers = []
    for table in tables:
        layer = ModalityBottleneck()
        layer.build(tuple(table.shape))
        for variable in layer.trainable_variables:  # away from the identity start, so no gradient vanishes
            variable.assign(variable + rng.normal(0.0, 0.3, variable.shape).astype(np.float32))
        layers.append(layer)
    deterministic = []
    for table, layer in zip(tables, layers):
        twin = ModalityBottleneck(stochastic=False)
        twin.build(tuple(table.shape))
        twin.mu.set_weights(layer.mu.get_weights())
        deterministic.append(twin)
    code_weights = [tf.constant(rng.standard_normal((n_items, w)).astype(np.float32)) for w in widths]
    row_weights = [tf.constant(rng.standard_normal((n_rows, w)).astype(np.float32)) for w in widths]

    def loss_of(codes, batch, kl, k):
        return 1e-3 * tf.reduce_sum(codes * code_weights[k]) + tf.reduce_mean(batch * row_weights[k]) + 3.0 * kl

    def library(bottlenecks, draw: bool):
        def loss(step):
            total = 0.0
            for k, (table, layer) in enumerate(zip(tables, bottlenecks)):
                encoding = layer.encode(table, rows, tf.stack([k, step]) if draw else None)
                kl = encoding.kl() if encoding.posterior is not None else 0.0
                total += loss_of(encoding.codes, encoding.batch_codes, kl, k)
            return total
        return loss

    def hand_written(step):
        total = 0.0
        for k, (table, layer) in enumerate(zip(tables, layers)):
            noise = reparameterization_noise(tf.shape(table), tf.stack([k, step]))
            outputs = sampled_codes(table, rows, noise, layer.mu.kernel, layer.mu.bias,
                                    layer.sigma.kernel, layer.sigma.bias)
            total += loss_of(*outputs, k)
        return total

    def one_pass(step):
        return sum(tf.reduce_sum(table * weights + 1.0) for table, weights in zip(tables, code_weights))

    def compiled(loss, variables):
        def run(step):
            with tf.GradientTape() as tape:
                value = loss(step)
            return value, tape.gradient(value, variables)
        return tf.function(run, jit_compile=True)

    bottleneck_variables = [v for layer in layers for v in layer.trainable_variables] + tables
    return {
        "one elementwise pass": compiled(one_pass, tables),
        "deterministic": compiled(library(deterministic, False), tables),
        "stochastic": compiled(library(layers, True), bottleneck_variables),
        "stochastic, no draw": compiled(library(layers, False), bottleneck_variables),
        "stochastic, hand-written gradient": compiled(hand_written, bottleneck_variables),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=6710, help="items encoded (tiktok's catalogue)")
    parser.add_argument("--rows", type=int, default=4096, help="batch rows: 2,048 positives and negatives")
    parser.add_argument("--widths", default="64,64", help="each modality's code width (MGCN's)")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    forms = step_functions(args.items, args.rows, widths)
    reference = forms["stochastic"](tf.constant(7))
    written = forms["stochastic, hand-written gradient"](tf.constant(7))
    np.testing.assert_allclose(written[0].numpy(), reference[0].numpy(), rtol=1e-4)
    for got, want in zip(written[1], reference[1]):
        got, want = tf.convert_to_tensor(got).numpy(), tf.convert_to_tensor(want).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * np.abs(want).max())
    for function in forms.values():
        function(tf.constant(0))
    seconds: dict[str, list[float]] = {form: [] for form in forms}
    for round_ in range(args.rounds):
        for form, function in forms.items():
            start = time.perf_counter()
            function(tf.constant(round_))[0].numpy()
            seconds[form].append(time.perf_counter() - start)
    base = statistics.median(seconds["stochastic"])
    print(f"# {args.items} items, {args.rows} batch rows, widths {widths}; medians of {args.rounds} rounds; "
          "the hand-written gradient matched the library's")
    print(f"{'form':<36} {'ms/step':>8} {'vs stochastic':>14}")
    for form, values in seconds.items():
        median = statistics.median(values)
        print(f"{form:<36} {1000 * median:8.2f} {median / base:14.2f}")


if __name__ == "__main__":
    sys.exit(main())
