#!/usr/bin/env bash
# Nightly saferisk audit, cron-ready (see docs/cluster-guide.md for the crontab line).
#
#   workflow/nightly.sh [PROFILE] [extra snakemake args...]
#
# PROFILE defaults to profiles/slurm (use profiles/default for a single machine).
# - one run at a time: `flock -n` on .snakemake/nightly.lock (a second cron start exits 0);
# - a stale Snakemake lock from a killed run is removed with `snakemake --unlock`;
# - what will run and why (dry-run reasons) goes first into the dated log;
# - the run keeps going past failed jobs and resumes incomplete ones;
# - the exit status is Snakemake's (non-zero when any job failed), logs/nightly/<date>.log.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 2
PROFILE="${1:-profiles/slurm}"
shift || true
SNAKEMAKE="${SNAKEMAKE:-$REPO/.venv/bin/snakemake}"
command -v "$SNAKEMAKE" >/dev/null 2>&1 || SNAKEMAKE=snakemake
STAMP="$(date -u +%Y-%m-%dT%H%M%SZ)"
LOG_DIR="$REPO/logs/nightly"
LOG="$LOG_DIR/$STAMP.log"
mkdir -p "$LOG_DIR" "$REPO/.snakemake"

exec 9>"$REPO/.snakemake/nightly.lock"
if ! flock -n 9; then
    echo "$STAMP another nightly run holds .snakemake/nightly.lock; nothing to do" >>"$LOG_DIR/skipped.log"
    exit 0
fi

{
    echo "== saferisk nightly $STAMP on $(hostname) (profile $PROFILE)"
    echo "== git: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo 'not a git checkout')"
    "$SNAKEMAKE" --workflow-profile "$PROFILE" --unlock "$@" >/dev/null 2>&1 || true
    echo "== dry run: what will run and why"
    "$SNAKEMAKE" --workflow-profile "$PROFILE" --dry-run --rerun-incomplete "$@"
    echo "== run"
} >>"$LOG" 2>&1

"$SNAKEMAKE" --workflow-profile "$PROFILE" --keep-going --rerun-incomplete "$@" >>"$LOG" 2>&1
STATUS=$?
echo "== finished with exit status $STATUS at $(date -u +%Y-%m-%dT%H%M%SZ)" >>"$LOG"
ln -sfn "$STAMP.log" "$LOG_DIR/latest.log"
exit "$STATUS"
