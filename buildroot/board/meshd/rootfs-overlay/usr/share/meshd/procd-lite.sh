# procd-lite: the parts of OpenWrt's procd, rc.common, functions.sh and
# jshn.sh that meshd's init script (/etc/init.d/meshd, from
# openwrt/meshd/files/meshd.init) uses, so that the same script runs on
# images without procd (buildroot, the QEMU router). /etc/init.d/S50meshd
# sources this file, then the init script, then calls start, stop or reload.
# POSIX sh: busybox ash and dash run it.
#
# What procd does, and this does too, for one service with one instance:
# - start_service describes the instance (procd_open_instance ...
#   procd_close_instance). An instance that is not running starts under a
#   supervisor that applies its limits, sends its stdout/stderr to the
#   system log, and respawns it when it exits (procd_set_param respawn).
# - Described again while it runs (start, reload): an unchanged description
#   (its parameters and the checksum of each `file`) changes nothing; a
#   changed one sends reload_signal (without one, the instance restarts).
#   The supervisor uses the new description from its next respawn on.
#   A start that describes no instance stops the running one.
# - stop: SIGTERM, and SIGKILL 5 s later (procd's term_timeout).
# What it does not: jails, users, netdev/env/watch parameters, triggers
# (nothing here emits config.change events; service_triggers is never
# called) and type checks in uci_load_validate (see there).
#
# State, in $PROCD_LITE_RUNDIR (/var/run): <service>.pid (the instance),
# <service>.supervisor.pid, <service>.instance (its description, as shell
# assignments written here) and <service>.data (what the instance put in
# procd's service data, e.g. the firewall rules that fw4 would open; there
# is no fw4 here, so it is only recorded, one `path=value` a line).
#
# The instance's stdout/stderr go to syslog through `logger` when there is
# one; to $PROCD_LITE_LOG (default /var/log/<service>.log) when there is
# none or when PROCD_LITE_LOG is set (the tests set it), and the init
# script's own `logger` calls then go there too.

: "${PROCD_LITE_SERVICE:=meshd}"
: "${PROCD_LITE_RUNDIR:=/var/run}"

_pl_state="$PROCD_LITE_RUNDIR/$PROCD_LITE_SERVICE"
# The field separator of _pl_uci's output (ASCII unit separator).
_pl_us=$(printf '\037')

if [ -n "${PROCD_LITE_LOG-}" ] || ! command -v logger >/dev/null 2>&1; then
	_pl_logfile="${PROCD_LITE_LOG:-/var/log/$PROCD_LITE_SERVICE.log}"

	# logger [-t tag] [-p priority] [message...]: to the log file (the
	# message, or each line of stdin without one).
	logger() {
		_pl_tag="logger"
		while [ $# -gt 0 ]; do
			case "$1" in
			-t) _pl_tag="$2"; shift 2 ;;
			-p) shift 2 ;;
			--) shift; break ;;
			-*) shift ;;
			*) break ;;
			esac
		done
		mkdir -p "${_pl_logfile%/*}"
		if [ $# -gt 0 ]; then
			printf '%s: %s\n' "$_pl_tag" "$*" >>"$_pl_logfile"
		else
			while IFS= read -r _pl_line; do
				printf '%s: %s\n' "$_pl_tag" "$_pl_line"
			done >>"$_pl_logfile"
		fi
	}

	_pl_sink() {
		mkdir -p "${_pl_logfile%/*}"
		cat >>"$_pl_logfile"
	}
else
	_pl_sink() {
		logger -t "$PROCD_LITE_SERVICE" -p daemon.info
	}
fi

# $1 as one shell word, for eval.
_pl_quote() {
	printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}

# Whether process $1 runs: a zombie, left to an init that is slow to reap
# it, has stopped too.
_pl_alive() {
	[ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 1
	case "$(sed -n 's/.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null)" in
	Z) return 1 ;;
	esac
	return 0
}

_pl_pid() {
	cat "$_pl_state.$1" 2>/dev/null
}

# ---- functions.sh: config_load, config_foreach ----

# The UCI file: the init script's $CONFIG, else /etc/config/<package>. A
# file uci could not load is logged, and config_foreach then fails.
config_load() {
	_pl_uci_file="${CONFIG:-/etc/config/$1}"
	if [ ! -r "$_pl_uci_file" ]; then
		_pl_errors="cannot read $_pl_uci_file"
	else
		_pl_errors=$(_pl_uci sections 2>&1 >/dev/null) && return 0
	fi
	printf '%s\n' "$_pl_errors" | logger -t procd-lite -p daemon.err
	return 1
}

# _pl_uci sections [type]: the names of the sections (of that type), one a
# line; an anonymous one is named as uci shows it, @type[index].
# _pl_uci options <section>: its options, `name<US>value` a line, a list's
# items joined by spaces. As in uci: a section named twice is one section,
# an empty option is no option, and a list added to an option keeps the
# option's value as its first item.
# Values are quoted with ' (no escapes), " (\ escapes) or bare (\ escapes),
# and parts may be joined ('a'"b"c is abc). A file uci would refuse exits 2.
_pl_uci() {
	awk -v mode="$1" -v want="$2" -v us="$_pl_us" '
	function fail(msg) {
		printf "%s:%d: %s\n", FILENAME, FNR, msg > "/dev/stderr"
		failed = 1
		exit 2
	}
	# Splits the line into words in w[1..n]; returns n.
	function words(line,    n, i, c, q, word, inword) {
		n = 0; q = ""; word = ""; inword = 0
		for (i = 1; i <= length(line); i++) {
			c = substr(line, i, 1)
			if (q == "\047") {
				if (c == "\047") q = ""; else word = word c
				continue
			}
			if (q == "\"") {
				if (c == "\\" && i < length(line)) { i++; word = word substr(line, i, 1); continue }
				if (c == "\"") q = ""; else word = word c
				continue
			}
			if (c == " " || c == "\t" || c == "\r") {
				if (inword) { w[++n] = word; word = ""; inword = 0 }
				continue
			}
			if (c == "#" && !inword) break
			inword = 1
			if (c == "\047" || c == "\"") { q = c; continue }
			if (c == "\\" && i < length(line)) { i++; word = word substr(line, i, 1); continue }
			word = word c
		}
		if (q != "") fail("unterminated quote")
		if (inword) w[++n] = word
		return n
	}
	{
		n = words($0)
		if (n == 0 || w[1] == "package") next
		if (w[1] == "config") {
			if (n < 2 || n > 3) fail("config needs a type and at most a name")
			type = w[2]
			if (n == 3 && (w[3] in typeof)) { section = w[3]; next }
			section = (n == 3) ? w[3] : ("@" type "[" (count[type] + 0) "]")
			count[type]++
			typeof[section] = type
			order[++sections] = section
			next
		}
		if (w[1] != "option" && w[1] != "list") fail("unknown keyword " w[1])
		if (section == "") fail(w[1] " outside a section")
		if (n != 3) fail(w[1] " needs a name and one value")
		if (mode != "options" || section != want) next
		key = w[2]
		if (!(key in seen)) { seen[key] = 1; keys[++nkeys] = key }
		if (w[1] == "option") {
			if (w[3] == "") delete value[key]; else value[key] = w[3]
		} else {
			# (not in one assignment: awk may make value[key] first)
			item = (key in value) ? value[key] " " w[3] : w[3]
			value[key] = item
		}
	}
	END {
		if (failed) exit 2
		if (mode == "sections") {
			for (i = 1; i <= sections; i++)
				if (want == "" || typeof[order[i]] == want) print order[i]
		} else {
			for (i = 1; i <= nkeys; i++)
				if (keys[i] in value) print keys[i] us value[keys[i]]
		}
	}' "$_pl_uci_file"
}

# config_foreach <function> [type] [args...]: calls <function> <section>
# [args...] for each section (of that type); returns the last call's status.
config_foreach() {
	_pl_function="$1"
	_pl_type="$2"
	shift 2
	_pl_sections=$(_pl_uci sections "$_pl_type" 2>/dev/null) || return 1
	_pl_status=0
	# One name a line, read on fd 3 (stdin stays the callback's); not a
	# word list: @member[0] would be a glob.
	while IFS= read -r _pl_section <&3; do
		[ -n "$_pl_section" ] || continue
		"$_pl_function" "$_pl_section" "$@"
		_pl_status=$?
	done 3<<EOF
$_pl_sections
EOF
	return "$_pl_status"
}

# ---- procd.sh: uci_load_validate ----

# uci_load_validate <package> <type> <section> <callback> <name:type[:default]>...
# As procd's: each option becomes a variable local to this call (so the
# callback sees it), set from the section or else to the spec's default;
# lists are their items joined by spaces (see _pl_uci). The callback gets
# the section and 0, or 1 if the file cannot be read.
# The types are not checked here (procd's validate_data does): the init
# script runs `meshd check` next (check_config), which refuses every value
# meshd would refuse and names its line.
# shellcheck disable=SC3043 # busybox ash and dash have local (procd.sh uses it)
uci_load_validate() {
	local _name="$3" _function="$4" _spec _option _names _result _lines _key _value
	shift 4
	_names=" "
	for _spec in "$@"; do
		_option="${_spec%%:*}"
		eval "local $_option"
		_value=
		case "${_spec#*:}" in
		*:*) _value="${_spec##*:}" ;;
		esac
		eval "$_option=\$_value"
		_names="$_names$_option "
	done
	_result=0
	_lines=$(_pl_uci options "$_name" 2>&1) || {
		printf '%s\n' "$_lines" | logger -t procd-lite -p daemon.err
		_lines=
		_result=1
	}
	while IFS="$_pl_us" read -r _key _value; do
		# Only the spec's options: a name is then a variable name.
		case "$_names" in
		*" $_key "*) eval "$_key=\$_value" ;;
		esac
	done <<EOF
$_lines
EOF
	[ -n "$_function" ] || return "$_result"
	"$_function" "$_name" "$_result"
}

# ---- procd.sh: the instance ----

procd_open_instance() {
	_pl_command=
	_pl_files=
	_pl_reload_signal=
	_pl_respawn=
	_pl_stdout=0
	_pl_stderr=0
	_pl_nofile=
	_pl_data=
}

# procd_set_param <type> [value...]: the types meshd's script uses.
procd_set_param() {
	_pl_param="$1"
	shift
	case "$_pl_param" in
	command)
		_pl_command=
		for _pl_arg in "$@"; do
			_pl_command="$_pl_command $(_pl_quote "$_pl_arg")"
		done
		;;
	file) _pl_files="$*" ;;
	reload_signal) _pl_reload_signal="$1" ;;
	# procd's defaults: a crash within 3600 s of the start counts, a
	# respawn waits 5 s, and the 6th crash in a row stops respawning.
	respawn) _pl_respawn="${1:-3600} ${2:-5} ${3:-5}" ;;
	stdout) _pl_stdout="$1" ;;
	stderr) _pl_stderr="$1" ;;
	limits)
		for _pl_arg in "$@"; do
			case "$_pl_arg" in
			nofile=*) _pl_nofile="${_pl_arg#nofile=}" ;;
			*) logger -t procd-lite -p daemon.warn "limit ${_pl_arg%%=*} not supported, ignored" ;;
			esac
		done
		;;
	*) logger -t procd-lite -p daemon.warn "procd_set_param $_pl_param not supported, ignored" ;;
	esac
}

# The instance's description: what the supervisor sources before each
# start, and what tells a changed instance from an unchanged one.
_pl_describe() {
	echo "_pl_command=$(_pl_quote "$_pl_command")"
	echo "_pl_reload_signal=$(_pl_quote "$_pl_reload_signal")"
	echo "_pl_respawn=$(_pl_quote "$_pl_respawn")"
	echo "_pl_stdout=$(_pl_quote "$_pl_stdout")"
	echo "_pl_stderr=$(_pl_quote "$_pl_stderr")"
	echo "_pl_nofile=$(_pl_quote "$_pl_nofile")"
	echo "_pl_data=$(_pl_quote "$_pl_data")"
	for _pl_file in $_pl_files; do
		echo "# $_pl_file $(md5sum <"$_pl_file" 2>/dev/null)"
	done
}

procd_close_instance() {
	_pl_described=1
	mkdir -p "$PROCD_LITE_RUNDIR"
	_pl_describe >"$_pl_state.instance.new"
	printf '%s' "$_pl_data" >"$_pl_state.data"
	if ! _pl_alive "$(_pl_pid supervisor.pid)"; then
		mv -f "$_pl_state.instance.new" "$_pl_state.instance"
		_pl_start_supervisor
	elif cmp -s "$_pl_state.instance.new" "$_pl_state.instance"; then
		rm -f "$_pl_state.instance.new"
	elif [ -n "$_pl_reload_signal" ]; then
		mv -f "$_pl_state.instance.new" "$_pl_state.instance"
		_pl_send_reload_signal
	else
		_pl_stop
		mv -f "$_pl_state.instance.new" "$_pl_state.instance"
		printf '%s' "$_pl_data" >"$_pl_state.data"
		_pl_start_supervisor
	fi
}

_pl_send_reload_signal() {
	# `.` of a missing file would end the shell.
	[ -r "$_pl_state.instance" ] || return 1
	# shellcheck source=/dev/null
	. "$_pl_state.instance"
	[ -n "$_pl_reload_signal" ] || return 1
	_pl_child=$(_pl_pid pid)
	_pl_alive "$_pl_child" || return 0
	kill -s "$_pl_reload_signal" "$_pl_child"
}

# ---- procd.sh/jshn.sh: service data ----

# Only the shape meshd's script writes: arrays of objects of scalars,
# recorded as `array[index].key=value` lines.
procd_open_data() {
	_pl_json_path=
	_pl_json_index=-1
}
procd_close_data() { :; }
json_add_array() {
	_pl_json_path="$1"
	_pl_json_index=-1
}
json_close_array() { _pl_json_path=; }
json_add_object() { _pl_json_index=$((_pl_json_index + 1)); }
json_close_object() { :; }
json_add_string() {
	_pl_data="$_pl_data${_pl_json_path}[$_pl_json_index].$1=$2
"
}
json_add_int() { json_add_string "$@"; }

# ---- the supervisor ----

_pl_start_supervisor() {
	# Its own stdio, so that a caller reading the init script's output (a
	# pipe) does not wait for the supervisor to end. With `exec` in the
	# subshell: a redirection of a function call would keep copies of the
	# old stdio in the supervisor (the shell saves them to restore later).
	# fd 3 is config_foreach's list of sections.
	(
		exec </dev/null >/dev/null 2>&1 3<&-
		_pl_supervise
	) &
	echo "$!" >"$_pl_state.supervisor.pid"
	# Returns once the instance runs, as procd's start does: a stop that
	# follows at once then finds its pid.
	_pl_deadline=$(($(date +%s) + 2))
	until [ -s "$_pl_state.pid" ] || [ "$(date +%s)" -ge "$_pl_deadline" ]; do
		sleep 0.1 2>/dev/null || sleep 1
	done
}

# Runs the instance once, its stdout/stderr on this subshell's stdout (the
# log), and logs how it ended. Unlike procd's, the instance starts with
# SIGINT and SIGQUIT ignored: a shell without job control (there is no
# terminal) starts background commands so, and `trap` cannot undo it. stop
# sends SIGTERM.
# Its "$@" is the command, from `eval set --`.
# shellcheck disable=SC2120
_pl_run_instance() {
	if [ -n "$_pl_nofile" ]; then
		# `ulimit -n` sets the soft and the hard limit at once, as procd's
		# setrlimit does.
		case "$_pl_nofile" in
		*" "*) _pl_soft="${_pl_nofile%% *}"; _pl_hard="${_pl_nofile##* }" ;;
		*) _pl_soft="$_pl_nofile"; _pl_hard="$_pl_nofile" ;;
		esac
		# shellcheck disable=SC3045 # busybox ash and dash have ulimit -n, -H, -S
		if [ "$_pl_soft" = "$_pl_hard" ]; then
			ulimit -n "$_pl_soft"
		else
			ulimit -H -n "$_pl_hard" && ulimit -S -n "$_pl_soft"
		fi || logger -t procd-lite -p daemon.warn "cannot set nofile=$_pl_nofile"
	fi
	eval "set -- $_pl_command"
	# shellcheck disable=SC2069 # 01: stderr to the log, stdout to nowhere
	case "$_pl_stdout$_pl_stderr" in
	11) "$@" 2>&1 & ;;
	10) "$@" 2>/dev/null & ;;
	01) "$@" 2>&1 >/dev/null & ;; # stderr to the log only
	*) "$@" >/dev/null 2>&1 & ;;
	esac
	echo "$!" >"$_pl_state.pid"
	wait "$!"
	_pl_exit=$?
	rm -f "$_pl_state.pid"
	logger -t procd-lite -p daemon.notice "$PROCD_LITE_SERVICE exited with status $_pl_exit"
}

# The supervisor's SIGTERM: the instance stops and is not respawned.
_pl_supervisor_stop() {
	trap - TERM
	[ -n "$_pl_sleeping" ] && kill "$_pl_sleeping" 2>/dev/null
	_pl_child=$(_pl_pid pid)
	[ -n "$_pl_child" ] && kill -TERM "$_pl_child" 2>/dev/null
	wait
	rm -f "$_pl_state.supervisor.pid"
	exit 0
}

_pl_supervise() {
	trap _pl_supervisor_stop TERM
	_pl_crashes=0
	while [ -r "$_pl_state.instance" ]; do
		# shellcheck source=/dev/null
		. "$_pl_state.instance"
		_pl_started=$(date +%s)
		# In the background, so that SIGTERM interrupts the wait.
		# shellcheck disable=SC2119
		_pl_run_instance | _pl_sink &
		wait "$!"
		[ -n "$_pl_respawn" ] || break
		# shellcheck disable=SC2086 # threshold, timeout, retries
		set -- $_pl_respawn
		if [ $(($(date +%s) - _pl_started)) -lt "$1" ]; then
			_pl_crashes=$((_pl_crashes + 1))
		else
			_pl_crashes=0
		fi
		if [ "$3" -gt 0 ] && [ "$_pl_crashes" -gt "$3" ]; then
			logger -t procd-lite -p daemon.err "$PROCD_LITE_SERVICE is in a crash loop ($_pl_crashes crashes): not respawning it"
			break
		fi
		_pl_delay="${PROCD_LITE_RESPAWN_DELAY:-$2}"
		logger -t procd-lite -p daemon.notice "respawning $PROCD_LITE_SERVICE in $_pl_delay s"
		sleep "$_pl_delay" &
		_pl_sleeping=$!
		wait "$_pl_sleeping"
		_pl_sleeping=
	done
	rm -f "$_pl_state.supervisor.pid"
}

# Stops the supervisor and the instance: SIGTERM, SIGKILL after 5 s. The
# description and the service data go with them.
_pl_stop() {
	_pl_supervisor=$(_pl_pid supervisor.pid)
	_pl_child=$(_pl_pid pid)
	if _pl_alive "$_pl_supervisor"; then
		kill -TERM "$_pl_supervisor"
	elif _pl_alive "$_pl_child"; then
		kill -TERM "$_pl_child"
	fi
	_pl_deadline=$(($(date +%s) + 5))
	while _pl_alive "$_pl_supervisor" || _pl_alive "$_pl_child"; do
		if [ "$(date +%s)" -ge "$_pl_deadline" ]; then
			for _pl_p in "$_pl_supervisor" "$_pl_child"; do
				_pl_alive "$_pl_p" && kill -KILL "$_pl_p"
			done
			break
		fi
		sleep 0.1 2>/dev/null || sleep 1
	done
	rm -f "$_pl_state.pid" "$_pl_state.supervisor.pid" "$_pl_state.instance" "$_pl_state.data"
	return 0
}

# ---- rc.common: the actions ----

# procd replaces the service's instances with those start_service
# describes: when it describes none (disabled, or a file meshd refuses),
# the running one stops.
start() {
	_pl_described=
	start_service "$@"
	_pl_status=$?
	[ -n "$_pl_described" ] || _pl_stop
	return "$_pl_status"
}

stop() {
	if command -v stop_service >/dev/null 2>&1; then
		stop_service "$@"
	fi
	_pl_stop
}

reload() {
	if command -v reload_service >/dev/null 2>&1; then
		reload_service "$@"
	else
		_pl_send_reload_signal
	fi
}
