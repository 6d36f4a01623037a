import sys

from common_utils.cli import run_cli

from .main import main

sys.exit(run_cli(main, prog="python -m faap_detr"))
