#!/usr/bin/env bash
# Warden's hand-off jobs, run on the host by AWX, Rundeck or StackStorm
# (deploy/handoff/README.md). The same file ships in deploy/awx/files/, deploy/rundeck/ and
# the StackStorm pack's actions/.
#
#   warden-job.sh deploy-rollback run|rollback --execution-id N --action NAME [options]
#   warden-job.sh scale-out run|rollback --execution-id N --action NAME [options]
#
# deploy-rollback run: point <root>/current at the release before the one it points to
#   (or --to VERSION), atomically (a new symlink renamed over the old), restart the unit and
#   wait for the health URL to answer 2xx. rollback: point it back, restart, check.
# scale-out run: start --count more instances of a template unit (app@<n>.service), never
#   more than --ceiling active, and wait for each to be active (and healthy, with
#   --health-url). rollback: stop exactly the instances the run started.
#
# Options are "--name value" or "--name=value"; "_" and "-" in a name are the same
# (StackStorm passes --health_url=...). Warden's "kind" (run or rollback) must come with the
# action name the job serves for it (--run-action, --rollback-action), so a runbook pointed
# at the wrong job template changes nothing.
#
# What a run changed is kept in --state-dir under Warden's execution id: the rollback undoes
# exactly that, and a repeated delivery of the same run changes nothing twice. One lock per
# host serialises the jobs. The last line on stdout is always "warden_summary=<one line>"
# (Rundeck's callback step captures it).
#
# Exit status: 0 done; 1 the work failed (the summary says what was changed); 2 bad input
# or not this job's action (one line on stderr), nothing changed.
set -u -o pipefail
umask 022

PROG=warden-job

say() { printf '%s: %s\n' "$PROG" "$*"; }

finish() { # status, summary
    printf 'warden_summary=%s\n' "$2"
    exit "$1"
}

bad_input() {
    printf '%s: %s\n' "$PROG" "$1" >&2
    finish 2 "refused, nothing changed: $1"
}

# -- arguments ---------------------------------------------------------------------------

declare -A opt=()
positionals=()
while (($#)); do
    case $1 in
    --*=*) name=${1%%=*} value=${1#*=} && shift ;;
    --*)
        (($# >= 2)) || bad_input "$1 needs a value"
        name=$1 value=$2 && shift 2
        ;;
    *) positionals+=("$1") && shift && continue ;;
    esac
    name=${name#--}
    [[ -n $name ]] || bad_input "an option without a name"
    opt[${name//_/-}]=$value
done

((${#positionals[@]} == 2)) ||
    bad_input "usage: warden-job.sh deploy-rollback|scale-out run|rollback --execution-id N --action NAME [options]"
job=${positionals[0]} kind=${positionals[1]}

case $job in
deploy-rollback)
    known="execution-id action run-action rollback-action state-dir root unit health-url health-timeout to"
    defaults=(run-action=roll_back_deploy rollback-action=restore_deploy root=/srv/app
        unit=app.service health-url=http://127.0.0.1:8080/health)
    ;;
scale-out)
    known="execution-id action run-action rollback-action state-dir template count ceiling health-url health-timeout port-base"
    defaults=(run-action=scale_out rollback-action=scale_in template=app@.service count=1 ceiling=8
        port-base=8000)
    ;;
*) bad_input "unknown job \"$job\" (deploy-rollback or scale-out)" ;;
esac
[[ $kind == run || $kind == rollback ]] || bad_input "unknown kind \"$kind\" (run or rollback)"

for name in "${!opt[@]}"; do
    [[ " $known " == *" $name "* ]] || bad_input "--$name is not an option of $job"
done
for pair in "${defaults[@]}" state-dir=/var/lib/warden-handoff health-timeout=30; do
    [[ -n ${opt[${pair%%=*}]:-} ]] || opt[${pair%%=*}]=${pair#*=}
done

WORD='^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'
INTEGER='^[1-9][0-9]{0,8}$'
PATH_RE='^/[^[:cntrl:]]*$'
URL_RE='^https?://[^[:space:][:cntrl:]]+$'
UNIT_RE='^[A-Za-z0-9][A-Za-z0-9@._:-]{0,250}\.service$'
TEMPLATE_RE='^[A-Za-z0-9][A-Za-z0-9._:-]{0,200}@\.service$'

need() { # option, regex, what it must be
    [[ -n ${opt[$1]:-} ]] || bad_input "--$1 is required"
    [[ ${opt[$1]} =~ $2 ]] || bad_input "--$1 \"${opt[$1]}\" is not $3"
}

need execution-id "$INTEGER" "an execution id"
need action "$WORD" "an action name"
need run-action "$WORD" "an action name"
need rollback-action "$WORD" "an action name"
need state-dir "$PATH_RE" "an absolute path"
need health-timeout "$INTEGER" "a number of seconds"
execution_id=${opt[execution-id]}
state_dir=${opt[state-dir]}
health_timeout=${opt[health-timeout]}

expected=${opt[run-action]}
[[ $kind == rollback ]] && expected=${opt[rollback-action]}
[[ ${opt[action]} == "$expected" ]] ||
    bad_input "Warden asked for \"${opt[action]}\"; this job's $kind is \"$expected\""

# -- shared steps --------------------------------------------------------------------------

take_lock() {
    mkdir -p -- "$state_dir" || finish 1 "cannot create the state directory $state_dir; changed nothing"
    exec 9>>"$state_dir/.lock" || finish 1 "cannot open $state_dir/.lock; changed nothing"
    flock -w 120 9 || finish 1 "another Warden job held $state_dir/.lock for 120 s; changed nothing"
}

state_get() { # file, key: the key's value
    local key value
    while IFS='=' read -r key value; do
        [[ $key == "$2" ]] && printf '%s' "$value" && return 0
    done <"$1"
    return 1
}

write_state() { # file, lines...: written whole or not at all
    local file=$1 tmp
    shift
    tmp=$(mktemp "$file.XXXXXX") || return 1
    printf '%s\n' "$@" >"$tmp" && mv -f -- "$tmp" "$file"
}

health_note=""
wait_healthy() { # url: polls until it answers 2xx or --health-timeout runs out
    local url=$1 deadline=$((SECONDS + health_timeout)) code
    while :; do
        code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "$url" 2>/dev/null) || true
        [[ $code =~ ^[0-9]{3}$ ]] || code=000
        if [[ $code == 2* ]]; then
            health_note="$url answered $code"
            say "$health_note"
            return 0
        fi
        if ((SECONDS >= deadline)); then
            if [[ $code == 000 ]]; then
                health_note="$url did not answer for ${health_timeout} s"
            else
                health_note="$url answered $code, not 2xx, for ${health_timeout} s"
            fi
            say "$health_note"
            return 1
        fi
        sleep 1
    done
}

wait_active() { # unit: polls "systemctl is-active" until active or --health-timeout runs out
    local deadline=$((SECONDS + health_timeout))
    until systemctl is-active --quiet "$1"; do
        ((SECONDS < deadline)) || return 1
        sleep 1
    done
}

# -- deploy-rollback -------------------------------------------------------------------------

current_release() { # the release <root>/current points to; else why not, and status 1
    local link=$root/current target parent
    if [[ ! -L $link ]]; then
        printf '%s is not a symlink' "$link"
        return 1
    fi
    target=$(readlink -- "$link")
    [[ $target == /* ]] || target=$root/$target
    target=${target%/}
    parent=$(cd -- "${target%/*}" 2>/dev/null && pwd -P)
    if [[ $parent != "$(cd -- "$root/releases" && pwd -P)" || ! -d $target ]]; then
        printf '%s points to %s, not to a release in %s/releases' "$link" "$target" "$root"
        return 1
    fi
    printf '%s' "${target##*/}"
}

previous_release() { # the release sorting just before $1 (version order)
    local previous="" name
    while IFS= read -r name; do
        [[ $name == "$1" ]] && break
        [[ $name =~ $WORD ]] && previous=$name
    done < <(find "$root/releases" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -V)
    [[ -n $previous && $name == "$1" ]] && printf '%s' "$previous"
}

switch_current() { # release: a new symlink renamed over "current", so it is never missing
    local tmp=$root/.current.warden-$$
    ln -sfn -- "releases/$1" "$tmp" && mv -fT -- "$tmp" "$root/current"
}

restart_and_check() { # what was done so far: restart the unit, then the health URL
    local done=$1 out
    if ! out=$(systemctl restart "$unit" 2>&1); then
        say "systemctl restart $unit failed: $out"
        finish 1 "$done, but systemctl restart $unit failed: $out"
    fi
    say "restarted $unit"
    wait_healthy "$health_url" || finish 1 "$done and restarted $unit, but $health_note"
    finish 0 "$done, restarted $unit, $health_note"
}

deploy_run() {
    local state=$state_dir/deploy-rollback-$execution_id current from to
    current=$(current_release) || finish 1 "$current; changed nothing"
    if [[ -f $state ]]; then
        from=$(state_get "$state" from) to=$(state_get "$state" to)
        [[ $current == "$to" ]] ||
            finish 1 "execution $execution_id switched $root/current from $from to $to before, but it points to $current now; changed nothing"
        say "execution $execution_id already switched $root/current from $from to $to; checking it again"
    else
        from=$current
        if [[ -n ${opt[to]:-} ]]; then
            to=${opt[to]}
            [[ -d $root/releases/$to ]] || finish 1 "there is no release $to in $root/releases; changed nothing"
        else
            to=$(previous_release "$current") ||
                finish 1 "there is no release before $current in $root/releases; changed nothing"
        fi
        [[ $to != "$from" ]] || finish 1 "$root/current already points to $to; changed nothing"
        # Written before the switch, so a rollback can undo a run that died right after it.
        write_state "$state" "from=$from" "to=$to" ||
            finish 1 "cannot write $state; changed nothing"
        switch_current "$to" || finish 1 "could not switch $root/current to $to; it still points to $from"
        say "switched $root/current from $from to $to"
    fi
    restart_and_check "switched $root/current from $from to $to"
}

deploy_rollback() {
    local state=$state_dir/deploy-rollback-$execution_id current from to
    [[ -f $state ]] || finish 0 "nothing to undo: execution $execution_id switched no release on this host"
    from=$(state_get "$state" from) to=$(state_get "$state" to)
    current=$(current_release) || finish 1 "$current; changed nothing"
    if [[ $current == "$to" ]]; then
        switch_current "$from" || finish 1 "could not switch $root/current back to $from; it still points to $to"
        say "switched $root/current back from $to to $from"
    elif [[ $current == "$from" ]]; then
        say "$root/current already points back to $from"
    else
        finish 1 "$root/current points to $current, neither $to (set by execution $execution_id) nor $from; changed nothing, a person must look"
    fi
    restart_and_check "switched $root/current back from $to to $from"
}

# -- scale-out -------------------------------------------------------------------------------

instance() { printf '%s@%s.service' "$prefix" "$1"; }

active_instances() { # the numbers of the template's active instances, one a line
    local units
    units=$(systemctl list-units --type=service --state=active --plain --no-legend --no-pager \
        "$prefix@*.service") || return 1
    awk '{ print $1 }' <<<"$units" | sed -n "s/^${prefix//./\\.}@\([0-9][0-9]*\)\.service\$/\1/p" |
        sort -n
}

check_instances() { # numbers...: each active, and healthy when --health-url is given
    local n url
    for n in "$@"; do
        if ! wait_active "$(instance "$n")"; then
            health_note="$(instance "$n") is not active after ${health_timeout} s"
            say "$health_note"
            return 1
        fi
        [[ -n $health_url ]] || continue
        url=${health_url//\{n\}/$n}
        url=${url//\{port\}/$((port_base + n))}
        wait_healthy "$url" || return 1
    done
    health_note="each is active"
    [[ -z $health_url ]] || health_note="each is active and healthy ($health_url answered 2xx)"
}

scale_run() {
    local state=$state_dir/scale-out-$execution_id active=() started=() recorded=() n room want
    local listing out
    if [[ -f $state ]]; then
        read -r -a started <<<"$(state_get "$state" started)"
        say "execution $execution_id already started ${started[*]/#/$prefix@}; checking them again"
    else
        listing=$(active_instances) || finish 1 "systemctl list-units failed; started nothing"
        [[ -z $listing ]] || mapfile -t active <<<"$listing"
        room=$((ceiling - ${#active[@]}))
        ((room > 0)) ||
            finish 1 "${#active[@]} instances of $template are active and the ceiling is $ceiling: started none"
        want=$((count < room ? count : room))
        n=1
        while ((${#started[@]} < want)); do
            [[ " ${active[*]} " == *" $n "* ]] || started+=("$n")
            n=$((n + 1))
        done
        for n in "${started[@]}"; do
            # Recorded before the start, so the rollback stops it even if this run dies.
            recorded+=("$n")
            write_state "$state" "started=${recorded[*]}" ||
                finish 1 "cannot write $state; stopped before starting $(instance "$n")"
            if ! out=$(systemctl start "$(instance "$n")" 2>&1); then
                say "systemctl start $(instance "$n") failed: $out"
                finish 1 "systemctl start $(instance "$n") failed: $out"
            fi
            say "started $(instance "$n")"
        done
    fi
    local names=() total
    for n in "${started[@]}"; do names+=("$(instance "$n")"); done
    total=$(active_instances | wc -l)
    local note="started ${names[*]}"
    ((${#started[@]} >= count)) || note="$note (${#started[@]} of $count asked: the ceiling is $ceiling)"
    check_instances "${started[@]}" || finish 1 "$note, but $health_note"
    finish 0 "$note; $total active; $health_note"
}

scale_rollback() {
    local state=$state_dir/scale-out-$execution_id started=() n failed=() out
    [[ -f $state ]] || finish 0 "nothing to undo: execution $execution_id started no instance on this host"
    read -r -a started <<<"$(state_get "$state" started)"
    for n in "${started[@]}"; do
        if out=$(systemctl stop "$(instance "$n")" 2>&1); then
            say "stopped $(instance "$n")"
        else
            say "systemctl stop $(instance "$n") failed: $out"
        fi
        ! systemctl is-active --quiet "$(instance "$n")" || failed+=("$(instance "$n")")
    done
    local names=()
    for n in "${started[@]}"; do names+=("$(instance "$n")"); done
    ((${#failed[@]} == 0)) || finish 1 "${failed[*]} still active after systemctl stop"
    finish 0 "stopped ${names[*]}, started by execution $execution_id"
}

# -- main ------------------------------------------------------------------------------------

if [[ $job == deploy-rollback ]]; then
    need root "$PATH_RE" "an absolute path"
    need unit "$UNIT_RE" "a service unit"
    need health-url "$URL_RE" "an http(s) URL"
    [[ -z ${opt[to]:-} ]] || need to "$WORD" "a release name"
    root=${opt[root]%/} unit=${opt[unit]} health_url=${opt[health-url]}
    [[ -d $root/releases ]] || bad_input "$root/releases is not a directory"
    take_lock
    if [[ $kind == run ]]; then deploy_run; else deploy_rollback; fi
else
    need template "$TEMPLATE_RE" "a template unit like app@.service"
    need count "$INTEGER" "a positive number"
    need ceiling "$INTEGER" "a positive number"
    need port-base "$INTEGER" "a port number"
    [[ -z ${opt[health-url]:-} ]] || need health-url "$URL_RE" "an http(s) URL"
    template=${opt[template]} count=${opt[count]} ceiling=${opt[ceiling]}
    port_base=${opt[port-base]} health_url=${opt[health-url]:-}
    ((port_base < 65536)) || bad_input "--port-base $port_base is not a port number"
    prefix=${template%@.service}
    take_lock
    if [[ $kind == run ]]; then scale_run; else scale_rollback; fi
fi
