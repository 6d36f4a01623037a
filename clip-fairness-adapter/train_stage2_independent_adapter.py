"""Stage 2 entry point: ``python train_stage2_independent_adapter.py --config config/...yaml [key=value ...]``."""
import sys

from clip_fairness_adapter.__main__ import main

if __name__ == "__main__":
    main(["train_stage2", *sys.argv[1:]])
