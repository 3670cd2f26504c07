#!/usr/bin/env bash
# Nightly saferisk audit, cron-ready (see docs/cluster-guide.md for the crontab line).
#
#   workflow/nightly.sh [PROFILE] [extra snakemake args...]
#
# PROFILE defaults to profiles/slurm (use profiles/default for a single machine).
# - one run at a time: `flock -n` on .snakemake/nightly.lock (a second cron start exits 0);
# - a live snakemake in this directory (started by hand) is left alone: the night is skipped;
# - after a killed run (no live snakemake here): its orphaned jobs are ended, then its stale
#   lock is removed with `snakemake --unlock` and its incomplete jobs rerun;
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

# Processes working in this directory: a snakemake run, or jobs it started (their scripts live
# in .snakemake/scripts; a `kill -9` of snakemake leaves them running with no parent).
snakemake_here() {  # $1: "runs" or "jobs"
    local proc pid args
    for proc in /proc/[0-9]*; do
        pid="${proc#/proc/}"
        [ "$pid" = "$$" ] && continue
        [ "$(readlink "$proc/cwd" 2>/dev/null)" = "$REPO" ] || continue
        args="$(tr '\0' ' ' <"$proc/cmdline" 2>/dev/null)" || continue
        case "$1:$args" in
            jobs:*.snakemake/scripts/*) echo "$pid" ;;
            runs:*.snakemake/scripts/*) ;;
            runs:*bin/snakemake\ *|runs:*-m\ snakemake*|runs:snakemake\ *) echo "$pid" ;;
        esac
    done
}

live="$(snakemake_here runs | tr '\n' ' ')"
if [ -n "$live" ]; then
    echo "$STAMP a snakemake run is live in $REPO (pid $live); nothing to do" >>"$LOG_DIR/skipped.log"
    exit 0
fi

{
    echo "== saferisk nightly $STAMP on $(hostname) (profile $PROFILE)"
    echo "== git: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo 'not a git checkout')"
    orphans="$(snakemake_here jobs | tr '\n' ' ')"
    if [ -n "$orphans" ]; then  # jobs of a killed run: their outputs would race this run's
        echo "== ending orphaned jobs of a killed run: pid $orphans"
        kill $orphans 2>/dev/null
        sleep 2
        kill -9 $orphans 2>/dev/null
    fi
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
