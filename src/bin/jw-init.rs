//! jw-init: the first process of every job, which jwd executes inside the
//! job's new PID namespace and cgroup. It sets up the job's remaining
//! namespaces, runs the command as the job user, forwards signals, reaps
//! orphans and reports to jwd; see src/job/init/. Not meant to be run by
//! hand.

fn main() {
    jw::job::init::main()
}
