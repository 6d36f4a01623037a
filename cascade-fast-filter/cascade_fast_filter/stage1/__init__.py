"""Stage-1 tasks: train_stage1 (1.1), calibrate_model (1.2), evaluate_stage1 (1.3), shared utils."""
