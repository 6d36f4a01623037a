#!/usr/bin/env bash
# Stage-1 evaluate: see cli.sh for the environment variables it reads.
exec "$(dirname "$0")/cli.sh" evaluate "$@"
