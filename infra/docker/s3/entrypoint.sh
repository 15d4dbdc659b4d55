#!/bin/sh
# versitygw from the environment, as the official image takes it: VGW_BACKEND (posix),
# VGW_BACKEND_ARG (the folder: a top-level folder is a bucket), VGW_PORT (default :7070),
# ROOT_ACCESS_KEY and ROOT_SECRET_KEY (read by versitygw itself), VGW_REGION.
set -eu
backend=${VGW_BACKEND:-posix}
arg=${VGW_BACKEND_ARG:-/data}
mkdir -p "$arg"
exec /usr/local/bin/versitygw --port "${VGW_PORT:-:7070}" --region "${VGW_REGION:-us-east-1}" "$backend" "$arg"
