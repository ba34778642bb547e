# shellcheck shell=bash
# Common helpers for the CRIB build scripts. Source, do not run.

CRIB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CRIB_CACHE=${CRIB_CACHE:-$HOME/.cache/crib}
# Tests boot the release variant by default: the KASAN+lockdep kernel does not boot under TCG
# within vmtest's fixed guest-agent timeouts on 2 cores (harness/README.md has the numbers).
# CRIB_VARIANT=debug builds and uses the debug kernel.
CRIB_VARIANT=${CRIB_VARIANT:-release}
CRIB_LOGS=$CRIB_CACHE/logs
JOBS=${JOBS:-$(nproc)}
CLANG=${CLANG:-clang-19}
mkdir -p "$CRIB_CACHE" "$CRIB_LOGS"

_t0=$(date +%s)
elapsed() { local s=$(($(date +%s) - _t0)); printf '%d:%02d' $((s / 60)) $((s % 60)); }
say() { printf '[crib %s] %s\n' "$(elapsed)" "$*" >&2; }
die() { printf '[crib %s] error: %s\n' "$(elapsed)" "$*" >&2; exit 1; }

# step NAME CMD...: run CMD with its output in a log file, showing a heartbeat every 60 s.
# On failure say which command failed, show the log's tail and where the whole log is.
step() {
	local name=$1; shift
	local log=$CRIB_LOGS/${name//[^A-Za-z0-9_.-]/_}.log
	local start=$(date +%s)
	say "$name ... (log: $log)"
	"$@" >"$log" 2>&1 &
	local pid=$!
	while ! wait_timeout "$pid" 60; do
		say "$name ... still running ($(( ($(date +%s) - start) / 60 )) min)"
	done
	local rc=0
	wait "$pid" || rc=$?
	if ((rc != 0)); then
		echo "----- last lines of $log -----" >&2
		tail -n 40 "$log" >&2
		echo "-----" >&2
		die "step '$name' failed (exit $rc): $*
       full log: $log"
	fi
	say "$name done in $(( $(date +%s) - start )) s"
}

# wait_timeout PID SECS: 0 if PID exited within SECS, 1 otherwise.
wait_timeout() {
	local pid=$1 n=$2
	while ((n-- > 0)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 1
	done
	! kill -0 "$pid" 2>/dev/null
}

# Digest of the files that define a build input, so caches are keyed by content.
digest_files() {
	(cd "$CRIB_ROOT" && find "$@" -type f ! -name '*~' 2>/dev/null | LC_ALL=C sort |
		while read -r f; do printf '%s\n' "$f"; cat "$f"; done) | sha256sum | cut -c1-16
}

# kmake_for TOOLCHAIN: set KMAKE to the make command line for the kernel tree built with
# TOOLCHAIN: gcc, or llvm (clang, as scripts/series bisect names it): LLVM=-19 for clang-19,
# ld.lld-19 and llvm-*-19.
kmake_for() {
	KMAKE=(make)
	case $1 in
	gcc) ;;
	llvm | clang) KMAKE+=(LLVM=-19) ;;
	*) die "unknown toolchain '$1' (gcc or llvm)" ;;
	esac
}

# kernel_configure SRC OBJ MAKE...: OBJ/.config for the kernel tree SRC as configs/matrix.toml
# describes the variant: `MAKE <base>`, the fragments merged in order, `MAKE olddefconfig`;
# then fail (status 1, one line per option) if an option one of our fragments asks for did not
# take effect (a missing dependency, a symbol a new base renamed). The kernel's own
# kernel/configs/ fragments are not checked. The caller sets config_base and fragments (from
# scripts/matrix). Shared by scripts/build and `scripts/series bisect`.
# shellcheck disable=SC2154,SC2094 # config_base, fragments: the caller's; reads fragments, not .config
kernel_configure() {
	local src=$1 obj=$2 f line opt want have bad=0
	shift 2
	mkdir -p "$obj"
	"$@" -C "$src" O="$obj" -s "$config_base" || return 1
	(cd "$src" && KCONFIG_CONFIG="$obj/.config" scripts/kconfig/merge_config.sh -m -O "$obj" \
		"$obj/.config" "${fragments[@]}") || return 1
	"$@" -C "$src" O="$obj" -s olddefconfig || return 1
	for f in "${fragments[@]}"; do
		[[ $f == kernel/configs/* ]] && continue
		while read -r line; do
			[[ $line =~ ^(CONFIG_[A-Z0-9_]+)=(.*)$ ]] || continue
			opt=${BASH_REMATCH[1]} want=${BASH_REMATCH[2]}
			have=$(grep -E "^$opt=" "$obj/.config" | cut -d= -f2- || true)
			if [[ $want == n ]]; then [[ -z $have ]] && continue; fi
			if [[ $have != "$want" ]]; then
				echo "config: $opt wanted $want, got '${have:-unset}' (from $(basename "$f"))"
				bad=1
			fi
		done <"$f"
	done
	return "$bad"
}
