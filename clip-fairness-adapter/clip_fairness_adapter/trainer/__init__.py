from . import stage1_trainer, stage2_independent_adapter_trainer
from .evaluate import predict, summarize, write_report

__all__ = ["predict", "stage1_trainer", "stage2_independent_adapter_trainer", "summarize", "write_report"]
