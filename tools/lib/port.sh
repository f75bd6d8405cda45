# Learning the port a server bound (sourced).
#
# Our servers bind port 0 (or the port they had before a restart) and
# report the port they got; nothing here picks a "free" port for later use.
#
#   sw_port_wait PID LOG [OFFSET [PORTFILE]]
#       print the TCP port process PID listens on, once it is known, from
#       (first found wins):
#         PORTFILE     written by services on the libs/service frame
#                      ($SAGEWAI_PORT_FILE)
#         LOG          past byte OFFSET (what this launch appended): the
#                      service's "<name> started" line, "http_port":"N", or
#                      sagewai-llm-mock's "listening on 127.0.0.1:N"
#         ss -ltnp     the one loopback TCP listener of PID (when the log
#                      level hides the started line)
#       Fails when PID exits first or after 15 s.

# sw_pid_alive PID: running (an exited process its parent has not reaped yet,
# a zombie, is not: tools/stack's processes outlive their parent)
sw_pid_alive() {
	local st
	kill -0 "$1" 2>/dev/null || return 1
	st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
	case "$st" in Z* | '') return 1 ;; esac
}

sw_port_from_log() { # LOG OFFSET
	[ -f "$1" ] || return 1
	tail -c +"$(($2 + 1))" "$1" 2>/dev/null |
		sed -n -e 's/.*"msg":"[a-z-]* started".*"http_port":"\([0-9]\{1,5\}\)".*/\1/p' \
			-e 's/^listening on 127\.0\.0\.1:\([0-9]\{1,5\}\)$/\1/p' | tail -n 1
}

sw_port_from_ss() { # PID
	command -v ss >/dev/null 2>&1 || return 1
	ss -Hltnp 2>/dev/null | grep "pid=$1," |
		sed -n 's/^[A-Z]* *[0-9]* *[0-9]* *127\.0\.0\.1:\([0-9]\{1,5\}\) .*/\1/p' | sort -u
}

sw_port_wait() { # PID LOG [OFFSET [PORTFILE]]
	local pid=$1 log=$2 off=${3:-0} pf=${4:-} port i
	for i in $(seq 1 300); do
		port=
		[ -n "$pf" ] && [ -s "$pf" ] && port=$(head -n 1 "$pf")
		[ -n "$port" ] || port=$(sw_port_from_log "$log" "$off")
		if [ -z "$port" ] && [ $((i % 10)) = 0 ]; then
			port=$(sw_port_from_ss "$pid")
			[ "$(echo "$port" | wc -l)" = 1 ] || port=
		fi
		case "$port" in [1-9]*) echo "$port"; return 0 ;; esac
		sw_pid_alive "$pid" || return 1
		sleep 0.05
	done
	return 1
}
