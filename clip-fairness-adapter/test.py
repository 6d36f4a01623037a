"""Evaluation entry point: ``python test.py --config config/train_stage2_independent_adapter.yaml [--checkpoint X]``."""
import sys

from clip_fairness_adapter.__main__ import main

if __name__ == "__main__":
    main(["eval", *sys.argv[1:]])
