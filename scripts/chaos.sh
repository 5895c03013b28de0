#!/usr/bin/env bash
# The long chaos loop of the reliability suite (scenario 1 of docs/reliability.md): SIGKILL
# `streamlake run` KILLS times (default 100) at every named crash point and at random moments
# while a producer writes, restarting it each time, then check with an independent Kafka
# consumer and `validate --audit` that nothing was lost or duplicated.
#
#   scripts/chaos.sh [KILLS] [SEED]
#
# The test suite runs the same scenario with 20 kills. This uses the test command, so it sets up
# and starts a fresh broker itself (see scripts/test.sh).
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KILLS="${1:-100}"
export STREAMLAKE_CHAOS_KILLS="$KILLS"
if [[ -n "${2:-}" ]]; then
    export STREAMLAKE_CHAOS_SEED="$2"
fi
exec bash "$SCRIPT_DIR/test.sh" --test integration -- reliability::chaos_kills --nocapture
