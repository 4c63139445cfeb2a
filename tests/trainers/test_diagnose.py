import json

from data_pipeline import write_synthetic_dataset
from mrdib_tf.experiments.config import RunConfig
from mrdib_tf.experiments.training import train
from trainers import diagnose


def test_diagnose_writes_figure_mutual_information_and_projector(tmp_path):
    folder = tmp_path / "tiny"
    write_synthetic_dataset(folder, n_users=80, n_items=60, noise_dims=4, signal_dims=12,
                            interactions_per_user=6, seed=1)
    run_dir = tmp_path / "run"
    train(RunConfig(data_dir=str(folder), epochs=1, batch_size=256, run_dir=str(run_dir)), verbose=False)

    assert diagnose.main(["--run-dir", str(run_dir), "--mine-steps", "20"]) == 0
    out = run_dir / "diagnostics"
    assert (out / "projections.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "diagnostics.json").read_text())
    assert report["variant"] == "MRdIB"
    assert set(report["mutual_information_nats"]) == {"h", "mu"}
    assert set(report["mutual_information_nats"]["mu"]) == {"image~text"}
    assert (out / "projector" / "projector_config.pbtxt").is_file()
