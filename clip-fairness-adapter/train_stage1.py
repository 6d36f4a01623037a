"""Stage 1 entry point: ``python train_stage1.py --config config/train_stage1.yaml [key=value ...]``."""
import sys

from clip_fairness_adapter.__main__ import main

if __name__ == "__main__":
    main(["train_stage1", *sys.argv[1:]])
