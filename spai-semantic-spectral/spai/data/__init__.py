from .data_finetune import (
                            CSVDataset,
                            EvalTransform,
                            TrainTransform,
                            build_loader,
                            collate_list,
                            read_rows,
                            set_loader_epoch,
)

__all__ = ["CSVDataset", "EvalTransform", "TrainTransform", "build_loader", "collate_list", "read_rows",
           "set_loader_epoch"]
