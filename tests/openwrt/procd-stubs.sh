# Stand-ins for what rc.common, procd.sh, jshn.sh and functions.sh give an
# OpenWrt init script: each prints the call it received, one line per call,
# so that a test can read what the script asked procd for. Sourced, not run.

procd_open_instance() { echo "procd_open_instance $*"; }
procd_set_param() { echo "procd_set_param $*"; }
procd_close_instance() { echo "procd_close_instance"; }
procd_open_data() { echo "procd_open_data"; }
procd_close_data() { echo "procd_close_data"; }
procd_add_reload_trigger() { echo "procd_add_reload_trigger $*"; }
procd_add_validation() { echo "procd_add_validation $*"; }
json_add_array() { echo "json_add_array $*"; }
json_add_object() { echo "json_add_object $*"; }
json_add_string() { echo "json_add_string $*"; }
json_add_int() { echo "json_add_int $*"; }
json_close_object() { echo "json_close_object"; }
json_close_array() { echo "json_close_array"; }
logger() { echo "logger $*"; }
start() { echo "start"; }
config_load() { :; }

# config_foreach <function> <type> [args...]: one section, named 'main'.
config_foreach() {
	_fn="$1"
	shift 2
	"$_fn" main "$@"
}

# uci_load_validate <package> <type> <section> <callback> <spec>...: each
# option takes the value of VALUE_<option> from the environment, else the
# spec's default; the callback gets VALIDATION_RESULT (default 0, valid).
uci_load_validate() {
	_section="$3"
	_callback="$4"
	shift 4
	for _spec in "$@"; do
		_name="${_spec%%:*}"
		eval "_value=\${VALUE_$_name-}"
		if [ -z "$_value" ]; then
			case "$_spec" in
			*:*:*) _value="${_spec##*:}" ;;
			esac
		fi
		eval "$_name=\$_value"
	done
	[ -n "$_callback" ] && "$_callback" "$_section" "${VALIDATION_RESULT:-0}"
}
