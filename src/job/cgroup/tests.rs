//! Both layouts on fake cgroup trees in temporary directories: detection
//! from a fixture mount table and /proc/self/cgroup, the limits written into
//! the right files, the counters read back, and job cgroups made and
//! removed under the server's own paths. No root needed.

use std::path::{Path, PathBuf};

use super::*;
use crate::protocol::{Limits, Usage};

const ID: &str = "0f8e3c2a-5b1d-4e6f-9a7b-1c2d3e4f5a6b";
const ID2: &str = "9c1d2e3f-4a5b-4c6d-8e7f-a0b1c2d3e4f5";

/// A temporary directory holding a fake cgroup tree and a fake /sys/block
/// with one disk, vda (254:0).
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let vda = dir.path().join("block/vda");
        std::fs::create_dir_all(&vda).unwrap();
        std::fs::write(vda.join("dev"), "254:0\n").unwrap();
        Fixture { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn put(&self, rel: &str, content: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    fn get(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }

    fn config(&self, mount_root: &str) -> CgroupConfig {
        CgroupConfig {
            name: "jw".into(),
            mount_root: self.path(mount_root),
            sys_block: self.path("block"),
        }
    }

    /// A mountinfo line for a cgroup filesystem at `rel`.
    fn mount(&self, rel: &str, fstype: &str, options: &str) -> String {
        let point = self.path(rel);
        format!(
            "40 30 0:40 / {} rw,nosuid - {fstype} {fstype} {options}\n",
            point.display()
        )
    }

    /// A pure v2 host: cgroup2 at `cg` with every controller, the server in
    /// /system.slice/jwd.service whose subtree_control starts empty.
    fn v2(&self) -> Result<Cgroups, CgroupError> {
        self.put(
            "cg/cgroup.controllers",
            "cpuset cpu io memory hugetlb pids\n",
        );
        self.put("cg/system.slice/jwd.service/cgroup.subtree_control", "");
        // The kernel makes this file in each new cgroup; a plain mkdir does not.
        self.put(
            "cg/system.slice/jwd.service/jw/cgroup.subtree_control",
            "cpu memory\n",
        );
        let mountinfo = self.mount("cg", "cgroup2", "rw,nsdelegate");
        Cgroups::detect_from(
            &self.config("cg"),
            &mountinfo,
            "0::/system.slice/jwd.service\n",
        )
    }

    /// A hybrid host: cgroup2 at `cg/unified` without controllers, v1 cpu
    /// (with cpuacct), memory, blkio and pids beside it.
    fn hybrid_mountinfo(&self) -> String {
        [
            self.mount("cg/unified", "cgroup2", "rw"),
            self.mount("cg/cpu,cpuacct", "cgroup", "rw,cpu,cpuacct"),
            self.mount("cg/memory", "cgroup", "rw,memory"),
            self.mount("cg/blkio", "cgroup", "rw,blkio"),
            self.mount("cg/pids", "cgroup", "rw,pids"),
            self.mount("cg/systemd", "cgroup", "rw,xattr,name=systemd"),
        ]
        .concat()
    }

    fn hybrid(&self) -> Result<Cgroups, CgroupError> {
        // The server's own cgroups exist; jw makes only its subtrees.
        for own in [
            "cg/unified/jwd.service",
            "cg/cpu,cpuacct/jwd",
            "cg/memory/jwd",
            "cg/blkio",
            "cg/pids/jwd",
        ] {
            std::fs::create_dir_all(self.path(own)).unwrap();
        }
        let own = "6:name=systemd:/jwd.service\n5:cpu,cpuacct:/jwd\n4:memory:/jwd\n\
                   3:blkio:/\n2:pids:/jwd\n0::/jwd.service\n";
        Cgroups::detect_from(&self.config("cg"), &self.hybrid_mountinfo(), own)
    }
}

fn all_limits() -> Limits {
    Limits {
        cpu_millicores: Some(1500),
        memory_bytes: Some(64 << 20),
        io_read_bps: Some(1000),
        io_write_bps: Some(2000),
        pids: Some(32),
        ..Limits::default()
    }
}

#[test]
fn v2_detection_moves_the_server_and_enables_controllers() {
    let f = Fixture::new();
    let cgroups = f.v2().unwrap();
    assert_eq!(cgroups.kind(), LayoutKind::V2);
    assert_eq!(
        cgroups.v2_subtree(),
        f.path("cg/system.slice/jwd.service/jw")
    );
    assert_eq!(
        f.get("cg/system.slice/jwd.service/jw.server/cgroup.procs"),
        std::process::id().to_string()
    );
    assert_eq!(
        f.get("cg/system.slice/jwd.service/cgroup.subtree_control"),
        "+cpu +memory +io +pids"
    );
    assert_eq!(
        f.get("cg/system.slice/jwd.service/jw/cgroup.subtree_control"),
        "+io +pids"
    );
    let devices: Vec<_> = cgroups.devices().iter().map(|d| &d.majmin).collect();
    assert_eq!(devices, ["254:0"]);
    assert!(cgroups.job_dirs().is_empty());
}

#[test]
fn v2_in_the_root_cgroup_the_server_stays_put() {
    let f = Fixture::new();
    f.put("cg/cgroup.controllers", "cpu io memory pids\n");
    f.put("cg/cgroup.subtree_control", "cpu io memory pids\n");
    f.put("cg/jw/cgroup.subtree_control", "");
    let mountinfo = f.mount("cg", "cgroup2", "rw");
    let cgroups = Cgroups::detect_from(&f.config("cg"), &mountinfo, "0::/\n").unwrap();
    assert_eq!(cgroups.v2_subtree(), f.path("cg/jw"));
    assert!(!f.path("cg/jw.server").exists());
    assert_eq!(f.get("cg/cgroup.subtree_control"), "cpu io memory pids\n");
    assert_eq!(
        f.get("cg/jw/cgroup.subtree_control"),
        "+cpu +memory +io +pids"
    );
}

#[test]
fn v2_without_every_controller_is_refused() {
    let f = Fixture::new();
    f.put("cg/cgroup.controllers", "cpu memory\n");
    let mountinfo = f.mount("cg", "cgroup2", "rw");
    let err = Cgroups::detect_from(&f.config("cg"), &mountinfo, "0::/\n").unwrap_err();
    assert!(
        err.to_string().ends_with("lacks the controllers io, pids"),
        "{err}"
    );
}

#[test]
fn no_cgroup2_is_refused() {
    let f = Fixture::new();
    let mountinfo = f.mount("cg/memory", "cgroup", "rw,memory");
    let err = Cgroups::detect_from(&f.config("cg"), &mountinfo, "4:memory:/\n").unwrap_err();
    assert!(matches!(err, CgroupError::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("no cgroup2 hierarchy"), "{err}");
}

#[test]
fn v2_job_gets_its_limits_in_its_leaf() {
    let f = Fixture::new();
    let cgroups = f.v2().unwrap();
    let leaf = "cg/system.slice/jwd.service/jw/".to_string() + ID;
    // Present only with swap accounting; the kernel makes it.
    f.put(&format!("{leaf}/memory.swap.max"), "max\n");
    let job = cgroups.create(ID, &all_limits()).unwrap();
    assert_eq!(job.leaf(), f.path(&leaf));
    assert_eq!(f.get(&format!("{leaf}/cpu.max")), "150000 100000");
    assert_eq!(f.get(&format!("{leaf}/memory.max")), "67108864");
    assert_eq!(f.get(&format!("{leaf}/memory.swap.max")), "0");
    assert_eq!(
        f.get(&format!("{leaf}/io.max")),
        "254:0 rbps=1000 wbps=2000"
    );
    assert_eq!(f.get(&format!("{leaf}/pids.max")), "32");
    assert!(job.join_dirs(true).is_empty());
    assert_eq!(job.join_dirs(false), [f.path(&leaf)]);
    assert_eq!(cgroups.job_dirs(), [f.path(&leaf)]);

    let only_write = Limits {
        io_write_bps: Some(5),
        ..Limits::default()
    };
    let other = cgroups.create(ID2, &only_write).unwrap();
    let other_leaf = other.leaf().to_path_buf();
    assert_eq!(
        std::fs::read_to_string(other_leaf.join("io.max")).unwrap(),
        "254:0 wbps=5"
    );
    assert!(!other_leaf.join("cpu.max").exists());
    assert!(!other_leaf.join("memory.max").exists());
    assert!(!other_leaf.join("pids.max").exists());
}

#[test]
fn v2_job_reads_its_counters_and_oom_kills() {
    let f = Fixture::new();
    let cgroups = f.v2().unwrap();
    let job = cgroups.create(ID, &Limits::default()).unwrap();
    let leaf = job.leaf().to_path_buf();
    assert_eq!(job.usage(), Usage::default());
    assert!(!job.oom_killed());
    let put = |name: &str, text: &str| std::fs::write(leaf.join(name), text).unwrap();
    put(
        "cpu.stat",
        "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
    );
    put("memory.peak", "4096\n");
    put(
        "io.stat",
        "254:0 rbytes=10 wbytes=20 rios=1 wios=1\n8:0 rbytes=1 wbytes=2 rios=1 wios=1\n",
    );
    put("pids.current", "3\n");
    put("memory.events", "low 0\nhigh 0\nmax 4\noom 2\noom_kill 0\n");
    let want = Usage {
        cpu_user_us: 1000,
        cpu_system_us: 500,
        memory_peak_bytes: 4096,
        io_read_bytes: 11,
        io_write_bytes: 22,
        pids_current: 3,
    };
    assert_eq!(job.usage(), want);
    assert!(!job.oom_killed(), "oom without oom_kill is no OOM kill");
    put("memory.events", "low 0\nhigh 0\nmax 4\noom 2\noom_kill 1\n");
    assert!(job.oom_killed());

    put("cgroup.events", "populated 1\nfrozen 0\n");
    assert!(job.populated());
    assert!(!job.remove_now().unwrap());
    put("cgroup.events", "populated 0\nfrozen 0\n");
    assert!(!job.populated());
    job.kill().unwrap();
    assert_eq!(
        std::fs::read_to_string(leaf.join("cgroup.kill")).unwrap(),
        "1"
    );
}

#[test]
fn v2_job_without_limits_is_made_and_removed_on_plain_dirs() {
    let f = Fixture::new();
    let cgroups = f.v2().unwrap();
    let job = cgroups.create(ID, &Limits::default()).unwrap();
    assert!(job.leaf().is_dir());
    assert!(!job.populated());
    assert!(job.remove_now().unwrap());
    assert!(!job.leaf().exists());
    // Gone already: still removed, and killing finds nobody.
    job.remove().unwrap();
    job.kill().unwrap();
    assert!(cgroups.job_dirs().is_empty());

    // A stale job left by a previous server, and one not named by a job id.
    f.put("cg/system.slice/jwd.service/jw/other/x", "");
    std::fs::create_dir(cgroups.v2_subtree().join(ID2)).unwrap();
    std::fs::create_dir(cgroups.v2_subtree().join(ID)).unwrap();
    // A job re-adopted (ID) keeps its cgroup; the stale one goes.
    assert_eq!(cgroups.cleanup_stale(&|name| name == ID).unwrap(), 1);
    assert!(!cgroups.v2_subtree().join(ID2).exists());
    assert!(cgroups.v2_subtree().join(ID).exists());
    assert_eq!(cgroups.open(ID).leaf(), cgroups.v2_subtree().join(ID));
    assert!(cgroups.v2_subtree().join("other").exists());
}

#[test]
fn v2_create_reports_a_limit_it_cannot_write() {
    let f = Fixture::new();
    let cgroups = f.v2().unwrap();
    std::fs::create_dir_all(cgroups.v2_subtree().join(ID).join("pids.max")).unwrap();
    let err = cgroups.create(ID, &all_limits()).unwrap_err();
    assert!(
        err.to_string().starts_with("cannot write \"32\" to "),
        "{err}"
    );
}

#[test]
fn hybrid_detection_makes_subtrees_under_the_servers_own_paths() {
    let f = Fixture::new();
    let cgroups = f.hybrid().unwrap();
    assert_eq!(cgroups.kind(), LayoutKind::Hybrid);
    assert_eq!(cgroups.v2_subtree(), f.path("cg/unified/jwd.service/jw"));
    for dir in [
        "cg/unified/jwd.service/jw",
        "cg/cpu,cpuacct/jwd/jw",
        "cg/memory/jwd/jw",
        "cg/blkio/jw",
        "cg/pids/jwd/jw",
    ] {
        assert!(f.path(dir).is_dir(), "{dir}");
    }
    assert!(!f.path("cg/systemd/jwd.service/jw").exists());
    cgroups.remove_subtree();
    assert!(!f.path("cg/memory/jwd/jw").exists());
    assert!(!f.path("cg/unified/jwd.service/jw").exists());
}

#[test]
fn hybrid_without_a_v1_controller_is_refused() {
    let f = Fixture::new();
    let mountinfo: String = f
        .hybrid_mountinfo()
        .lines()
        .filter(|l| !l.ends_with(",pids"))
        .map(|l| format!("{l}\n"))
        .collect();
    let err = Cgroups::detect_from(&f.config("cg"), &mountinfo, "0::/\n").unwrap_err();
    assert!(
        err.to_string()
            .ends_with("the v1 pids controller is not mounted"),
        "{err}"
    );
}

#[test]
fn hybrid_job_gets_its_limits_in_v1_cgroups() {
    let f = Fixture::new();
    let cgroups = f.hybrid().unwrap();
    let job = cgroups.create(ID, &all_limits()).unwrap();
    let file = |dir: &str, name: &str| f.get(&format!("{dir}/{ID}/{name}"));
    assert_eq!(file("cg/cpu,cpuacct/jwd/jw", "cpu.cfs_period_us"), "100000");
    assert_eq!(file("cg/cpu,cpuacct/jwd/jw", "cpu.cfs_quota_us"), "150000");
    assert_eq!(
        file("cg/memory/jwd/jw", "memory.limit_in_bytes"),
        "67108864"
    );
    // No memsw file (swap accounting off): swappiness 0 instead.
    assert_eq!(file("cg/memory/jwd/jw", "memory.swappiness"), "0");
    assert_eq!(
        file("cg/blkio/jw", "blkio.throttle.read_bps_device"),
        "254:0 1000"
    );
    assert_eq!(
        file("cg/blkio/jw", "blkio.throttle.write_bps_device"),
        "254:0 2000"
    );
    assert_eq!(file("cg/pids/jwd/jw", "pids.max"), "32");
    assert_eq!(
        job.leaf(),
        f.path(&format!("cg/unified/jwd.service/jw/{ID}"))
    );
    assert!(!job.leaf().join("cpu.max").exists());
    let v1: Vec<PathBuf> = [
        "cg/cpu,cpuacct/jwd/jw",
        "cg/memory/jwd/jw",
        "cg/blkio/jw",
        "cg/pids/jwd/jw",
    ]
    .iter()
    .map(|d| f.path(&format!("{d}/{ID}")))
    .collect();
    assert_eq!(job.join_dirs(true), v1);
    assert_eq!(job.join_dirs(false)[0], job.leaf());
    assert_eq!(job.join_dirs(false)[1..], v1);
    assert_eq!(cgroups.job_dirs().len(), 5);

    // With swap accounting, memsw gets the same limit and swappiness is left.
    f.put(
        &format!("cg/memory/jwd/jw/{ID2}/memory.memsw.limit_in_bytes"),
        "",
    );
    cgroups.create(ID2, &all_limits()).unwrap();
    assert_eq!(
        f.get(&format!(
            "cg/memory/jwd/jw/{ID2}/memory.memsw.limit_in_bytes"
        )),
        "67108864"
    );
    assert!(!f
        .path(&format!("cg/memory/jwd/jw/{ID2}/memory.swappiness"))
        .exists());
}

#[test]
fn hybrid_job_reads_its_counters_from_both_hierarchies() {
    let f = Fixture::new();
    let cgroups = f.hybrid().unwrap();
    let job = cgroups.create(ID, &Limits::default()).unwrap();
    assert_eq!(job.usage(), Usage::default());
    let put = |dir: &str, name: &str, text: &str| f.put(&format!("{dir}/{ID}/{name}"), text);
    put(
        "cg/unified/jwd.service/jw",
        "cpu.stat",
        "usage_usec 9\nuser_usec 7\nsystem_usec 2\n",
    );
    put("cg/memory/jwd/jw", "memory.max_usage_in_bytes", "8192\n");
    put(
        "cg/blkio/jw",
        "blkio.throttle.io_service_bytes_recursive",
        "254:0 Read 30\n254:0 Write 40\n254:0 Total 70\nTotal 70\n",
    );
    put("cg/pids/jwd/jw", "pids.current", "2\n");
    // What v2 would read: ignored in the hybrid layout.
    put("cg/unified/jwd.service/jw", "memory.peak", "1\n");
    let want = Usage {
        cpu_user_us: 7,
        cpu_system_us: 2,
        memory_peak_bytes: 8192,
        io_read_bytes: 30,
        io_write_bytes: 40,
        pids_current: 2,
    };
    assert_eq!(job.usage(), want);
    assert!(!job.oom_killed());
    put(
        "cg/memory/jwd/jw",
        "memory.oom_control",
        "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
    );
    assert!(job.oom_killed());
}

#[test]
fn hybrid_job_without_limits_is_made_and_removed_on_plain_dirs() {
    let f = Fixture::new();
    let cgroups = f.hybrid().unwrap();
    let job = cgroups.create(ID, &Limits::default()).unwrap();
    assert_eq!(cgroups.job_dirs().len(), 5);
    assert!(job.remove_now().unwrap());
    assert!(cgroups.job_dirs().is_empty());
    let job = cgroups.create(ID, &Limits::default()).unwrap();
    job.remove().unwrap();
    assert!(cgroups.job_dirs().is_empty());

    // Stale: one job with all its cgroups, one left only in memory.
    cgroups.create(ID, &Limits::default()).unwrap();
    std::fs::create_dir(f.path(&format!("cg/memory/jwd/jw/{ID2}"))).unwrap();
    assert_eq!(cgroups.job_dirs().len(), 6);
    // Re-adopted: every cgroup of ID stays, and `open` finds them all.
    assert_eq!(cgroups.cleanup_stale(&|name| name == ID).unwrap(), 1);
    assert_eq!(cgroups.job_dirs().len(), 5);
    assert_eq!(
        cgroups.open(ID).join_dirs(false).len(),
        5,
        "the leaf and 4 v1"
    );
    assert_eq!(cgroups.cleanup_stale(&|_| false).unwrap(), 1);
    assert!(cgroups.job_dirs().is_empty());
}

#[test]
fn hybrid_create_removes_what_it_made_when_a_limit_fails() {
    let f = Fixture::new();
    let cgroups = f.hybrid().unwrap();
    std::fs::create_dir_all(f.path(&format!("cg/pids/jwd/jw/{ID}/pids.max"))).unwrap();
    // Only the pids limit, so the other cgroups stay empty plain dirs that
    // can be removed again.
    let limits = Limits {
        pids: Some(32),
        ..Limits::default()
    };
    let err = cgroups.create(ID, &limits).unwrap_err();
    assert!(
        err.to_string().starts_with("cannot write \"32\" to "),
        "{err}"
    );
    // The leaf was never made; the other v1 cgroups were removed again.
    let left: Vec<PathBuf> = cgroups.job_dirs();
    assert_eq!(left, [f.path(&format!("cg/pids/jwd/jw/{ID}"))]);
    assert!(!Path::new(&f.path(&format!("cg/memory/jwd/jw/{ID}"))).exists());
}
