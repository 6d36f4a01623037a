#!/usr/bin/env bash
# Stage-1 calibrate: see cli.sh for the environment variables it reads.
exec "$(dirname "$0")/cli.sh" calibrate "$@"
