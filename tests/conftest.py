"""Test-wide set-up: quiet TensorFlow, and the project root importable from any test."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
