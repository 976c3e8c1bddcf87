#!/usr/bin/env bash
# Submit the featurization job to a running Ray cluster.
#
#   RAY_ADDRESS=http://HEAD:8265 launch/ray/submit_featurize.sh \
#       --config configs/featurize/demo.yaml source.n=100000 out=/shared/shards/gen-wacsf workers=64
#
# Arguments are those of `python -m data_pipeline` (config, key=value overrides, --overwrite).
# `out` must be a path every Ray node can write (a shared filesystem). Extra `ray job submit`
# options go in RAY_SUBMIT_ARGS, e.g. RAY_SUBMIT_ARGS="--no-wait --submission-id feat-mp".
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
: "${RAY_ADDRESS:?set RAY_ADDRESS to the dashboard address of the cluster, e.g. http://127.0.0.1:8265}"
# shellcheck disable=SC2086  # RAY_SUBMIT_ARGS holds separate words on purpose
exec ray job submit --address "$RAY_ADDRESS" --working-dir "$repo" \
    --runtime-env "$here/runtime_env.yaml" ${RAY_SUBMIT_ARGS:-} \
    -- python -m data_pipeline --no-progress "$@"
