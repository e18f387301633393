# shellcheck shell=bash
# Shared helpers of the perf/ scripts (sourced, not run).

# Stops a process: the given signal (TERM by default), up to 10 s for it
# to exit, then KILL; reaps it if it is our child.
stop_pid() {
    local pid=$1 sig=${2:-TERM}
    if kill -0 "$pid" 2>/dev/null; then
        kill -"$sig" "$pid" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# Ports the scripts pick for their servers: below the kernel's ephemeral
# range (32768 and up by default). A port in that range can be taken at any
# moment as the source port of some client's connection (the tests run in
# parallel), and a server started on it then fails to bind.
PORT_MIN=20000
PORT_SPAN=12000

# A loopback port nobody listens on right now.
free_port() {
    local p
    while :; do
        p=$((PORT_MIN + RANDOM % PORT_SPAN))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
}

# One RESP command over /dev/tcp (no redis-cli needed): resp ADDR CMD...
# with ADDR = PORT (on 127.0.0.1) or HOST:PORT. Prints the first reply line,
# or the lines of a bulk reply (INFO).
resp() {
    local addr=$1
    shift
    [[ "$addr" == *:* ]] || addr="127.0.0.1:$addr"
    local req arg
    req="*$#\r\n"
    for arg in "$@"; do req+="\$${#arg}\r\n$arg\r\n"; done
    (
        exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}" || exit 1
        printf "%b" "$req" >&3
        local first line len got=0
        IFS= read -r -t 5 first <&3 || exit 1
        first=${first%$'\r'}
        if [[ "$first" == \$* ]]; then
            len=${first#\$}
            while ((got < len)) && IFS= read -r -t 5 line <&3; do
                echo "${line%$'\r'}"
                got=$((got + ${#line} + 1))
            done
        else
            echo "$first"
        fi
    ) 2>/dev/null
}

# json_field FILE KEY: a top-level number of tandem-bench's pretty JSON
# report.
json_field() {
    awk -v k="\"$2\":" '$1 == k { v = $2; sub(/,$/, "", v); print v; exit }' "$1"
}
