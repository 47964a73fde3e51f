#!/bin/bash
# Runs inside the systemd guest of scripts/test-deb (as jw-deb-test.service,
# after multi-user.target): installs the jw package, checks that its unit
# runs jwd with the shipped config and serves jobs, reloads it, purges the
# package and checks that no process, cgroup or file of jw's is left.
# Prints what it did; exits 0 when every check passed. Every wait is bounded.
set -u
DEB=/vmtest/jw.deb
PKI=/etc/jw/pki
JOB_UIDS_FIRST=600000 JOB_UIDS_LAST=699999
failed=0
say() { echo "deb-check: [$(cut -d" " -f1 /proc/uptime)s] $*"; }
fail() {
    echo "deb-check: FAILED: $*"
    failed=1
}
# wait_for SECONDS COMMAND...: true once COMMAND succeeds, false if it has
# not within SECONDS.
wait_for() {
    local deadline=$(($(date +%s) + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        (($(date +%s) < deadline)) || return 1
        sleep 1
    done
}
jw_as_tester() {
    timeout 120 jw --ca "$PKI/server-ca.crt" --cert "$PKI/tester.crt" --key "$PKI/tester.key" \
        --connect-timeout 20s "$@"
}
jwd_journal() { journalctl -u jwd --no-pager -n 40 -o cat 2>&1 | sed 's/^/  journal: /'; }
# Processes of jw's: jwd and jw-init by name, and anything running as a job
# uid. Read with shell builtins only: a fork per process is slow under TCG.
jw_processes() {
    local d comm key uid rest cmdline
    for d in /proc/[0-9]*; do
        read -r comm <"$d/comm" 2>/dev/null || continue
        uid=
        while read -r key uid rest; do [[ $key == Uid: ]] && break; done <"$d/status" 2>/dev/null
        if [[ $comm == jwd || $comm == jw-init ]] ||
            { [[ $uid =~ ^[0-9]+$ ]] && ((uid >= JOB_UIDS_FIRST && uid <= JOB_UIDS_LAST)); }; then
            read -r -d '' cmdline <"$d/cmdline" 2>/dev/null
            echo "pid ${d#/proc/} uid $uid: $comm ($cmdline...)"
        fi
    done
}

say "guest: systemd $(systemctl --version | awk 'NR==1 {print $2}'), cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers), kernel $(uname -r)"
[[ $(stat -fc %T /sys/fs/cgroup) == cgroup2fs ]] || fail "/sys/fs/cgroup is not a pure cgroup v2 mount"

say "dpkg -i"
if ! dpkg -i "$DEB"; then
    fail "dpkg -i $DEB failed"
    exit 1
fi
[[ $(systemctl is-enabled jwd 2>&1) == enabled ]] || fail "jwd.service is not enabled after install: $(systemctl is-enabled jwd 2>&1)"
if ! wait_for 120 systemctl is-active --quiet jwd; then
    fail "jwd.service is not active 120 s after install: $(systemctl is-active jwd)"
    systemctl status jwd --no-pager 2>&1 | sed 's/^/  /'
    jwd_journal
    exit 1
fi
exec_start=$(systemctl show -p ExecStart --value jwd)
[[ $exec_start == *"/usr/bin/jwd --config /etc/jw/jwd.toml"* ]] || fail "jwd.service runs something else: $exec_start"
main_pid=$(systemctl show -p MainPID --value jwd)
say "jwd active, main pid $main_pid, cgroup $(cut -d: -f3 /proc/"$main_pid"/cgroup)"
for f in server-ca.crt server.crt server.key client-ca.crt client-ca.key crl.pem; do
    [[ -s $PKI/$f ]] || fail "postinst made no $PKI/$f"
done
[[ $(stat -c %a "$PKI/server.key") == 600 ]] || fail "$PKI/server.key is mode $(stat -c %a "$PKI/server.key"), not 600"

say "jw certs add-user tester"
jw certs add-user tester --out "$PKI" || fail "jw certs add-user tester --out $PKI failed"

# jwd may still be starting its listeners: the first request is retried.
if ! wait_for 90 jw_as_tester list; then
    fail "jw list as tester did not succeed within 90 s:"
    jw_as_tester list 2>&1 | sed 's/^/  /'
    jwd_journal
fi

say "jw run -- true"
jw_as_tester run -- true || fail "jw run -- true exited $?"

say "jw run: a job that writes to its work directory"
out=$(jw_as_tester run -- sh -c 'echo written-by-a-job >note && cat note && id -u && pwd')
rc=$?
mapfile -t lines <<<"$out"
if ((rc != 0)) || [[ ${lines[0]:-} != written-by-a-job ]] || [[ ${lines[2]:-} != /home/job ]] ||
    ! [[ ${lines[1]:-} =~ ^[0-9]+$ ]] || ((lines[1] < JOB_UIDS_FIRST || lines[1] > JOB_UIDS_LAST)); then
    fail "the writing job exited $rc and printed (want the note, a job uid, /home/job):"
    printf '  %s\n' "${lines[@]}"
fi

say "jw run -t: a job with a terminal (its pty under the unit's device allow-list)"
out=$(timeout 120 script -qec "jw --ca $PKI/server-ca.crt --cert $PKI/tester.crt --key $PKI/tester.key run -t -- sh -c 'tty; echo \$((6 * 7))'" /dev/null 2>&1)
rc=$?
if ((rc != 0)) || [[ $out != *"/dev/pts/"* || $out != *42* ]]; then
    fail "the job with a terminal exited $rc and printed (want its /dev/pts/N and 42):"
    echo "$out" | sed 's/^/  /'
fi

say "the jobs' cgroups are under jwd.service's"
svc=/sys/fs/cgroup/system.slice/jwd.service
[[ -d $svc/jw && -d $svc/jw.server ]] || fail "no jw/ and jw.server/ under $svc: $(ls "$svc" 2>&1 | tr '\n' ' ')"
grep -qx "$main_pid" "$svc/jw.server/cgroup.procs" 2>/dev/null || fail "jwd ($main_pid) is not in $svc/jw.server"

say "systemctl reload jwd"
systemctl reload jwd || fail "systemctl reload jwd exited $?"
# A new connection after the reload is served by the same jwd.
jw_as_tester run -- true || fail "jw run -- true after the reload exited $?"
if ! systemctl is-active --quiet jwd || [[ $(systemctl show -p MainPID --value jwd) != "$main_pid" ]]; then
    fail "jwd did not survive its reload (active: $(systemctl is-active jwd), main pid $(systemctl show -p MainPID --value jwd), was $main_pid)"
    jwd_journal
    # Started again, so that the removal's checks below still see a jwd
    # with a running job.
    systemctl start jwd
    wait_for 120 systemctl is-active --quiet jwd || fail "jwd.service did not start again"
    wait_for 90 jw_as_tester list || fail "jwd did not serve again within 90 s of its start"
fi

say "a job left running for the removal to stop"
jw_as_tester start --name lingering -- sleep 3600 || fail "jw start -- sleep 3600 exited $?"
job_sleeps() { [[ $(jw_processes) == *"sleep"* ]]; }
wait_for 30 job_sleeps || fail "the lingering job's sleep never ran as a job uid"

say "dpkg --purge jw"
dpkg --purge jw || fail "dpkg --purge jw exited $?"

say "nothing of jw's is left"
left=$(jw_processes)
[[ -z $left ]] || fail "processes of jw's left after the purge:"$'\n'"$left"
systemctl is-active --quiet jwd && fail "jwd.service is still active after the purge"
[[ ! -e $svc ]] || fail "$svc is still there: $(find "$svc" -type d | tr '\n' ' ')"
cgroups=$(find /sys/fs/cgroup -type d \( -name 'jw' -o -name 'jw.*' -o -name 'jwd.service' \) 2>/dev/null)
[[ -z $cgroups ]] || fail "cgroups of jw's left after the purge: $cgroups"
for p in /var/lib/jw /etc/jw /usr/bin/jwd /usr/bin/jw /usr/bin/jw-init /lib/systemd/system/jwd.service \
    /etc/systemd/system/multi-user.target.wants/jwd.service; do
    [[ ! -e $p ]] || fail "$p is still there after the purge"
done

if ((failed)); then
    say "some checks failed"
    ps -eo pid,user,comm,args 2>&1 | sed 's/^/  ps: /'
else
    say "all checks passed"
fi
exit "$failed"
