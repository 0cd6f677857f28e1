//! The Docker image, built and run for real.
//!
//! 1. A clean clone of HEAD (so only committed files are in the build context) is built with a
//!    real OCI builder that honours `.dockerignore`, from `docker/Dockerfile` as it is:
//!    `buildah --storage-driver vfs bud --isolation chroot --pull=never -f docker/Dockerfile
//!    -t fleetload-test .`
//! 2. The image runs a null scenario as uid 65532 with a report directory mounted, the way
//!    `docker run --user … -v …` runs it, and the launcher inside the same image merges that
//!    report (how a CI step uses the image without a Rust toolchain).
//! 3. Its configuration: user 65532, the worker as entrypoint, SIGTERM as stop signal, no shell,
//!    stripped binaries, under 80 MB.
//!
//! No image registry is reachable from the machines this suite runs on, so the Dockerfile's two
//! base images are first built here as local stand-ins, under their exact names, and the build
//! runs with `--pull=never`:
//! - `docker.io/library/rust:1-bookworm` (the Dockerfile's `rust:1-bookworm`): Debian bookworm
//!   from debootstrap (minbase) with only what the README says the first command needs besides
//!   Rust (gcc, g++, make, perl; see [`BUILDER_PACKAGES`]), and this
//!   machine's Rust toolchain at the official image's paths (`RUSTUP_HOME=/usr/local/rustup`,
//!   `CARGO_HOME=/usr/local/cargo`, `/usr/local/cargo/bin` on `PATH`). It also gets this
//!   machine's CA bundle (`/etc/ssl/certs/ca-certificates.crt`): these machines reach crates.io
//!   through a TLS proxy whose CA is only in that bundle, and cargo inside the build must fetch
//!   the crates.
//! - `gcr.io/distroless/cc-debian12:nonroot`: glibc, libgcc, libstdc++ and tzdata from the same
//!   Debian packages, Debian's CA certificates, `/etc/passwd` and `/etc/group` with `nonroot`
//!   (65532:65532, home `/home/nonroot`), user 65532, and no shell.
//!
//! The stand-ins stay in buildah's storage and the debootstrap tree under the target directory,
//! so later runs skip them; a stand-in is rebuilt when its recipe ([`STAND_IN_RECIPE`]) or the
//! Rust toolchain changes. The image itself is built on every run; the Dockerfile's cache mounts
//! keep cargo's registry and target directory between runs, so a rebuild compiles what changed.
//!
//! Needs root, `buildah`, `debootstrap`, `dpkg-deb`, `git` and access to Debian's mirror and to
//! crates.io (ci/test.sh installs the packages). Without them these tests fail; they never skip.
//! From nothing (no stand-ins, no cargo cache) the build takes about half an hour on 2 cores.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The Dockerfile's `FROM rust:1-bookworm`, fully qualified.
const BUILDER_BASE: &str = "docker.io/library/rust:1-bookworm";
/// The Dockerfile's final stage.
const RUNTIME_BASE: &str = "gcr.io/distroless/cc-debian12:nonroot";
/// The tag of the image under test.
const IMAGE_TAG: &str = "fleetload-test";
/// Bump when a stand-in's recipe below changes, so cached stand-ins are rebuilt.
const STAND_IN_RECIPE: &str = "3";
/// Label on the stand-ins: their recipe (and for the builder the Rust toolchain).
const STAND_IN_LABEL: &str = "org.fleetload.test.stand-in";
const DEBIAN_SUITE: &str = "bookworm";
const DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";
/// On top of minbase (which has bash): what the README says the first command needs besides the
/// Rust toolchain, and no more — a C and C++ compiler, make and perl — plus the CA certificates
/// cargo needs to fetch crates. The official image has these and much more; building the image
/// on this stand-in is the test that the README's list is enough (no CMake, no pkg-config, no
/// -dev package).
const BUILDER_PACKAGES: &[&str] = &["ca-certificates", "gcc", "g++", "make", "perl"];
/// What distroless `cc` holds besides its own files (the .debs come from the debootstrap tree).
const RUNTIME_PACKAGES: &[&str] = &["libc6", "libgcc-s1", "libstdc++6", "tzdata"];
/// The image must stay under this (uncompressed, the sum of its layers).
const MAX_IMAGE_BYTES: u64 = 80_000_000;
/// The real `gcr.io/distroless/cc-debian12` is about 23 MB: what the Dockerfile adds on top of
/// the stand-in must leave the image under [`MAX_IMAGE_BYTES`] on the real base too.
const REAL_RUNTIME_BASE_BYTES: u64 = 24_000_000;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where the stand-ins' debootstrap tree, the build log and the lock live between runs.
fn cache_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("image");
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn buildah() -> Command {
    let mut cmd = Command::new("buildah");
    cmd.args(["--storage-driver", "vfs"]);
    cmd
}

/// Runs `cmd`, returns its stdout; panics with both streams when it fails or cannot start.
fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "{what}: cannot start {:?} ({e}); ci/test.sh installs buildah, debootstrap and git",
            cmd.get_program()
        )
    });
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd` with both streams appended to `log`; on failure panics with the log's tail.
fn run_logged(cmd: &mut Command, what: &str, log: &Path) {
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let status = cmd
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .status()
        .unwrap_or_else(|e| panic!("{what}: cannot start {:?} ({e})", cmd.get_program()));
    if !status.success() {
        let text = fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(80)..].join("\n");
        panic!(
            "{what} failed ({status}); last lines of {}:\n{tail}",
            log.display()
        );
    }
}

/// Copies the tree `from` into `to` (owners, modes, links, devices kept), leaving out the
/// `exclude` patterns (tar's, relative to `from` as `./…`).
fn copy_tree(from: &Path, to: &Path, exclude: &[&str]) {
    fs::create_dir_all(to).unwrap();
    let mut pack = Command::new("tar");
    pack.arg("-C").arg(from).arg("--numeric-owner");
    for pattern in exclude {
        pack.arg(format!("--exclude={pattern}"));
    }
    let mut pack = pack
        .args(["-cf", "-", "."])
        .stdout(Stdio::piped())
        .spawn()
        .expect("tar");
    let unpack = Command::new("tar")
        .arg("-C")
        .arg(to)
        .args(["--numeric-owner", "-xpf", "-"])
        .stdin(pack.stdout.take().unwrap())
        .status()
        .expect("tar");
    let packed = pack.wait().unwrap();
    assert!(
        packed.success() && unpack.success(),
        "copying {} to {} failed",
        from.display(),
        to.display()
    );
}

/// A working container that is removed when dropped (also when an assertion fails).
struct Container {
    name: String,
}

impl Container {
    fn from(image: &str, purpose: &str) -> Container {
        let name = format!("fleetload-{purpose}-{}", std::process::id());
        // A container of that name left by a killed earlier run of this process id.
        let _ = buildah()
            .args(["rm", &name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        run(
            buildah().args(["from", "--pull=never", "--name", &name, image]),
            "buildah from",
        );
        Container { name }
    }

    fn mount(&self) -> PathBuf {
        PathBuf::from(run(buildah().args(["mount", &self.name]), "buildah mount").trim())
    }

    fn commit(&self, image: &str) {
        run(buildah().args(["umount", &self.name]), "buildah umount");
        run(
            buildah().args(["commit", "--quiet", &self.name, image]),
            "buildah commit",
        );
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = buildah()
            .args(["rm", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// An exclusive lock on a file, held until dropped: two suites on one machine do not build the
/// same stand-in at once.
struct Lock {
    _file: nix::fcntl::Flock<fs::File>,
}

impl Lock {
    fn take(path: &Path) -> Lock {
        let file = fs::File::create(path).unwrap();
        let file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .unwrap_or_else(|(_, e)| panic!("flock {}: {e}", path.display()));
        Lock { _file: file }
    }
}

/// `buildah inspect` of an image, or `None` when there is no such image.
fn inspect(image: &str) -> Option<serde_json::Value> {
    let out = buildah()
        .args(["inspect", "--type", "image", image])
        .stderr(Stdio::null())
        .output()
        .expect("buildah is needed: ci/test.sh installs it");
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).expect("buildah inspect prints JSON"))
}

/// The stand-in label of `image`, or `None` when there is no such image.
fn stand_in_label(image: &str) -> Option<String> {
    let info = inspect(image)?;
    Some(
        info["OCIv1"]["config"]["Labels"][STAND_IN_LABEL]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// Removes an image that is about to be replaced (an out-of-date stand-in, the previous image
/// under test), so that vfs does not keep a copy per run; left alone while a container uses it.
fn remove_image(image: &str) {
    let _ = buildah()
        .args(["rmi", image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Debian bookworm (minbase plus [`BUILDER_PACKAGES`]) from debootstrap, cached under the
/// target directory. Its `/var/cache/apt/archives` keeps the .debs the runtime stand-in is
/// made of.
fn debian_tree(log: &Path) -> PathBuf {
    let dir = cache_dir();
    let tree = dir.join(format!("{DEBIAN_SUITE}-minbase"));
    let done = dir.join(format!("{DEBIAN_SUITE}-minbase.done"));
    let want = format!(
        "{DEBIAN_SUITE} minbase {},{}",
        BUILDER_PACKAGES.join(","),
        RUNTIME_PACKAGES.join(",")
    );
    if tree.is_dir() && fs::read_to_string(&done).ok().as_deref() == Some(want.as_str()) {
        return tree;
    }
    let partial = dir.join(format!("{DEBIAN_SUITE}-minbase.partial"));
    for d in [&tree, &partial] {
        if d.exists() {
            fs::remove_dir_all(d).unwrap();
        }
    }
    let _ = fs::remove_file(&done);
    let started = Instant::now();
    eprintln!(
        "image test: debootstrap {DEBIAN_SUITE} (minbase) into {}",
        tree.display()
    );
    run_logged(
        Command::new("debootstrap")
            .arg("--variant=minbase")
            // The runtime stand-in's .debs are taken from this tree's archives: they are fetched
            // with it (tzdata is no build tool, and nothing the builder has depends on it).
            .arg(format!(
                "--include={},{}",
                BUILDER_PACKAGES.join(","),
                RUNTIME_PACKAGES.join(",")
            ))
            .arg(DEBIAN_SUITE)
            .arg(&partial)
            .arg(DEBIAN_MIRROR),
        "debootstrap (ci/test.sh installs it; it needs root and Debian's mirror)",
        log,
    );
    fs::rename(&partial, &tree).unwrap();
    fs::write(&done, &want).unwrap();
    eprintln!(
        "image test: debootstrap took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    tree
}

/// The Rust toolchain cargo test runs with: (sysroot, `rustc -V`).
fn host_toolchain() -> (PathBuf, String) {
    let sysroot = run(
        Command::new("rustc").args(["--print", "sysroot"]),
        "rustc --print sysroot",
    );
    let version = run(Command::new("rustc").arg("-V"), "rustc -V");
    (PathBuf::from(sysroot.trim()), version.trim().to_string())
}

/// Stand-in for `docker.io/library/rust:1-bookworm`, see the module comment.
fn builder_stand_in(log: &Path) {
    let (sysroot, rustc) = host_toolchain();
    let key = format!("recipe {STAND_IN_RECIPE}; {rustc}");
    if stand_in_label(BUILDER_BASE).as_deref() == Some(key.as_str()) {
        return;
    }
    let tree = debian_tree(log);
    let started = Instant::now();
    eprintln!("image test: building the stand-in {BUILDER_BASE} ({rustc})");
    remove_image(BUILDER_BASE);
    let ctr = Container::from("scratch", "builder-stand-in");
    let fs_root = ctr.mount();
    copy_tree(
        &tree,
        &fs_root,
        &["./var/cache/apt/archives/*.deb", "./var/lib/apt/lists/*"],
    );

    // The toolchain at the official image's RUSTUP_HOME, under the same toolchain name, as the
    // default; the documentation (rust-docs) is left out, as the official image's minimal
    // profile does.
    let toolchain = sysroot.file_name().unwrap().to_str().unwrap().to_string();
    let rustup_home = fs_root.join("usr/local/rustup");
    copy_tree(
        &sysroot,
        &rustup_home.join("toolchains").join(&toolchain),
        &["./share/doc"],
    );
    fs::write(
        rustup_home.join("settings.toml"),
        format!("version = \"12\"\ndefault_toolchain = \"{toolchain}\"\nprofile = \"minimal\"\n\n[overrides]\n"),
    )
    .unwrap();
    let cargo_bin = fs_root.join("usr/local/cargo/bin");
    fs::create_dir_all(&cargo_bin).unwrap();
    let tools = [
        "cargo",
        "rustc",
        "rustdoc",
        "cargo-clippy",
        "cargo-fmt",
        "rustfmt",
        "clippy-driver",
    ];
    let rustup = Command::new("rustup")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if rustup {
        // rustup and its proxies, as in the official image.
        let which = run(
            Command::new("sh").args(["-c", "command -v rustup"]),
            "locate rustup",
        );
        fs::copy(which.trim(), cargo_bin.join("rustup")).unwrap();
        for tool in tools {
            std::os::unix::fs::symlink("rustup", cargo_bin.join(tool)).unwrap();
        }
    } else {
        // A toolchain without rustup: the tools themselves on PATH.
        for tool in tools {
            let target = Path::new("/usr/local/rustup/toolchains")
                .join(&toolchain)
                .join("bin")
                .join(tool);
            if fs_root.join(target.strip_prefix("/").unwrap()).exists() {
                std::os::unix::fs::symlink(&target, cargo_bin.join(tool)).unwrap();
            }
        }
    }

    // This machine's CA bundle (with the TLS proxy's CA), also where update-ca-certificates
    // would pick it up again if a package in the build triggered it.
    let bundle = Path::new("/etc/ssl/certs/ca-certificates.crt");
    fs::copy(bundle, fs_root.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    let local_ca = fs_root.join("usr/local/share/ca-certificates");
    fs::create_dir_all(&local_ca).unwrap();
    fs::copy(bundle, local_ca.join("build-host-bundle.crt")).unwrap();

    let rust_version = rustc
        .split_whitespace()
        .nth(1)
        .unwrap_or("unknown")
        .to_string();
    run(
        buildah()
            .args(["config", "--env", "RUSTUP_HOME=/usr/local/rustup"])
            .args(["--env", "CARGO_HOME=/usr/local/cargo"])
            .args(["--env", "PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
            .arg("--env")
            .arg(format!("RUST_VERSION={rust_version}"))
            .args(["--cmd", "bash", "--label"])
            .arg(format!("{STAND_IN_LABEL}={key}"))
            .arg(&ctr.name),
        "buildah config (builder stand-in)",
    );
    ctr.commit(BUILDER_BASE);
    eprintln!(
        "image test: builder stand-in took {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

/// Stand-in for `gcr.io/distroless/cc-debian12:nonroot`, see the module comment.
fn runtime_stand_in(log: &Path) {
    let key = format!("recipe {STAND_IN_RECIPE}; {}", RUNTIME_PACKAGES.join(","));
    if stand_in_label(RUNTIME_BASE).as_deref() == Some(key.as_str()) {
        return;
    }
    let tree = debian_tree(log);
    eprintln!("image test: building the stand-in {RUNTIME_BASE}");
    remove_image(RUNTIME_BASE);
    let ctr = Container::from("scratch", "runtime-stand-in");
    let fs_root = ctr.mount();
    let archives = tree.join("var/cache/apt/archives");
    let debs: Vec<String> = fs::read_dir(&archives)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for package in RUNTIME_PACKAGES {
        let deb = debs
            .iter()
            .find(|f| f.starts_with(&format!("{package}_")) && f.ends_with(".deb"))
            .unwrap_or_else(|| panic!("no {package}_*.deb in {}", archives.display()));
        run(
            Command::new("dpkg-deb")
                .arg("-x")
                .arg(archives.join(deb))
                .arg(&fs_root),
            "dpkg-deb -x",
        );
    }
    for dir in ["usr/share/doc", "usr/share/lintian", "usr/share/gdb"] {
        let _ = fs::remove_dir_all(fs_root.join(dir));
    }
    // Debian's own CA bundle (debootstrap generated it from the ca-certificates package).
    let certs = fs_root.join("etc/ssl/certs");
    fs::create_dir_all(&certs).unwrap();
    fs::copy(
        tree.join("etc/ssl/certs/ca-certificates.crt"),
        certs.join("ca-certificates.crt"),
    )
    .unwrap();
    fs::write(
        fs_root.join("etc/passwd"),
        "root:x:0:0:root:/root:/sbin/nologin\n\
         nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n\
         nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
    )
    .unwrap();
    fs::write(
        fs_root.join("etc/group"),
        "root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n",
    )
    .unwrap();
    fs::write(
        fs_root.join("etc/os-release"),
        "PRETTY_NAME=\"Distroless\"\nNAME=\"Debian GNU/Linux\"\nID=\"debian\"\nVERSION_ID=\"12\"\n",
    )
    .unwrap();
    for (dir, mode, owner) in [
        ("tmp", 0o1777, 0),
        ("root", 0o700, 0),
        ("home/nonroot", 0o700, 65532),
    ] {
        let path = fs_root.join(dir);
        fs::create_dir_all(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        std::os::unix::fs::chown(&path, Some(owner), Some(owner)).unwrap();
    }
    for shell in ["bin/sh", "usr/bin/sh", "bin/bash", "bin/dash"] {
        assert!(
            fs::symlink_metadata(fs_root.join(shell)).is_err(),
            "the runtime stand-in must have no shell, but has /{shell}"
        );
    }
    run(
        buildah()
            .args(["config", "--user", "65532", "--workingdir", "/home/nonroot"])
            .args([
                "--env",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ])
            .args(["--env", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"])
            .arg("--label")
            .arg(format!("{STAND_IN_LABEL}={key}"))
            .arg(&ctr.name),
        "buildah config (runtime stand-in)",
    );
    ctr.commit(RUNTIME_BASE);
}

/// The image under test: its id, built once per test binary from a clean clone of HEAD.
fn image() -> &'static str {
    static BUILT: OnceLock<Result<String, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        std::panic::catch_unwind(build_image).map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        })
    });
    match built {
        Ok(id) => id,
        Err(why) => panic!("the image was not built: {why}"),
    }
}

fn build_image() -> String {
    // Both are needed on a fresh machine; check them even when the stand-ins are cached, so
    // that a machine which could not rebuild them fails here, not on the day they change.
    for tool in ["buildah", "debootstrap"] {
        run(
            Command::new(tool).arg("--version"),
            &format!("{tool} --version"),
        );
    }
    let log = cache_dir().join("build.log");
    let _ = fs::remove_file(&log);
    let started = Instant::now();
    {
        let _lock = Lock::take(&cache_dir().join("stand-ins.lock"));
        builder_stand_in(&log);
        runtime_stand_in(&log);
    }
    let stand_ins = started.elapsed().as_secs_f64();

    // A clean clone of HEAD: uncommitted and ignored files are not in the build context.
    let head = run(
        Command::new("git")
            .arg("-C")
            .arg(root())
            .args(["rev-parse", "HEAD"]),
        "git rev-parse HEAD",
    );
    let head = head.trim();
    let dirty = run(
        Command::new("git")
            .arg("-C")
            .arg(root())
            .args(["status", "--porcelain"]),
        "git status",
    );
    if !dirty.trim().is_empty() {
        eprintln!("image test: uncommitted changes are not part of the image (HEAD {head})");
    }
    let work = tempfile::tempdir().unwrap();
    let clone = work.path().join("fleetload");
    run(
        Command::new("git")
            .args(["clone", "--quiet", "--no-checkout"])
            .arg(root())
            .arg(&clone),
        "git clone",
    );
    run(
        Command::new("git")
            .arg("-C")
            .arg(&clone)
            .args(["checkout", "--quiet", "--detach", head]),
        "git checkout",
    );

    // The image this tag named before, removed once the new one is built (vfs keeps whole
    // copies of every image, and one is left per run otherwise).
    let previous = inspect(IMAGE_TAG).and_then(|i| i["FromImageID"].as_str().map(String::from));
    let iidfile = work.path().join("iid");
    let build_started = Instant::now();
    eprintln!("image test: buildah bud of {head} (log: {})", log.display());
    run_logged(
        buildah()
            .args(["bud", "--isolation", "chroot", "--pull=never"])
            .args(["-f", "docker/Dockerfile", "-t", IMAGE_TAG, "--iidfile"])
            .arg(&iidfile)
            .arg(".")
            .current_dir(&clone),
        "buildah bud -f docker/Dockerfile",
        &log,
    );
    let id = fs::read_to_string(&iidfile).unwrap().trim().to_string();
    let id = id.strip_prefix("sha256:").unwrap_or(&id).to_string();
    if let Some(previous) = previous.filter(|p| *p != id) {
        remove_image(&previous);
    }
    eprintln!(
        "image test: stand-ins {stand_ins:.0} s, image build {:.0} s",
        build_started.elapsed().as_secs_f64()
    );
    id
}

/// The image's OCI config (`User`, `Entrypoint`, `StopSignal`, …).
fn config(image: &str) -> serde_json::Value {
    let info = inspect(image).unwrap_or_else(|| panic!("no image {image}"));
    info["OCIv1"]["config"].clone()
}

/// Uncompressed bytes of the image's layers, from its manifest.
fn layer_sizes(image: &str) -> Vec<(String, u64)> {
    let info = inspect(image).unwrap_or_else(|| panic!("no image {image}"));
    let manifest: serde_json::Value =
        serde_json::from_str(info["Manifest"].as_str().expect("a manifest")).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().unwrap().to_string(),
                l["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Every file and directory under `dir` (not `dir` itself).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        out.push(path.clone());
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            walk(&path, out);
        }
    }
}

/// `buildah run` of `argv` in a fresh container of `image` as 65532:65532, with `reports`
/// mounted at /runs: the equivalent of `docker run --user 65532:65532 -v reports:/runs`.
fn run_in_image(
    image: &str,
    purpose: &str,
    reports: &Path,
    env: &[(&str, &str)],
    argv: &[&str],
) -> std::process::Output {
    let ctr = Container::from(image, purpose);
    let mut cmd = buildah();
    cmd.args(["run", "--isolation", "chroot", "--user", "65532:65532"])
        .arg("--volume")
        .arg(format!("{}:/runs:rw", reports.display()));
    for (k, v) in env {
        cmd.arg("--env").arg(format!("{k}={v}"));
    }
    cmd.arg(&ctr.name).arg("--").args(argv);
    cmd.output().expect("buildah run")
}

/// The processes whose environment holds `entry` (`KEY=value`).
fn processes_with_env(entry: &str) -> Vec<u32> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|kv| kv == entry.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

fn screen(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_launcher_called_worker_runs_as_the_worker() {
    // What the image relies on: /usr/local/bin/worker is a link to the launcher.
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("worker");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_launcher"), &link).unwrap();
    let out = Command::new(&link)
        .env_clear()
        .env("FLEETLOAD_TARGET", "nowhere")
        .output()
        .unwrap();
    let text = screen(&out);
    // The worker's own refusal of a bad scenario (exit 2), naming the variable.
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("fleetload worker") && text.contains("FLEETLOAD_TARGET"),
        "{text}"
    );
}

/// The tests of the built image, in a module of their own so that ci/test.sh can leave them for
/// last (`--skip built_image::`, then `cargo test --test image -- built_image::`): they take the
/// longest.
mod built_image {
    use super::*;

    #[test]
    fn the_image_runs_a_null_scenario_as_uid_65532_and_its_launcher_merges_the_report() {
        let image = image();
        let entrypoint: Vec<String> = config(image)["Entrypoint"]
            .as_array()
            .expect("the image has an entrypoint")
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        let argv: Vec<&str> = entrypoint.iter().map(String::as_str).collect();

        // The report directory belongs to the user the container runs as, as with
        // `docker run --user "$(id -u):$(id -g)" -v "$PWD/runs:/runs"`.
        let reports = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(reports.path(), Some(65532), Some(65532)).unwrap();
        let run_id = format!("image-{}", std::process::id());
        let out = run_in_image(
            image,
            "worker",
            reports.path(),
            &[
                ("FLEETLOAD_TARGET", "null"),
                ("FLEETLOAD_DURATION", "3s"),
                ("FLEETLOAD_RATE", "1000"),
                ("FLEETLOAD_REPORT_URL", "/runs"),
                ("FLEETLOAD_RUN_ID", &run_id),
                ("FLEETLOAD_TASK_ID", "t1"),
            ],
            &argv,
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "worker in the image:\n{}",
            screen(&out)
        );

        let task = reports.path().join(&run_id).join("tasks/t1");
        for file in [
            "summary.json",
            "timeseries.csv",
            "histograms.hlog",
            "started.json",
        ] {
            assert!(
                task.join(file).is_file(),
                "{file} missing in {}",
                task.display()
            );
        }
        let summary: serde_json::Value =
            serde_json::from_slice(&fs::read(task.join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["outcome"]["status"], "completed", "{summary}");
        assert_eq!(summary["run_id"], run_id.as_str());
        assert_eq!(summary["task_id"], "t1");
        assert_eq!(summary["target"], "null");
        // 1,000 events a second for 3 s, all of them acknowledged by the null target.
        let counts = &summary["counts"];
        assert_eq!(counts["attempted"], 3000, "{counts}");
        assert_eq!(counts["acknowledged"], 3000, "{counts}");
        assert_eq!(counts["failed"], 0, "{counts}");
        if let Some(planned) = counts.get("planned") {
            assert_eq!(planned, 3000, "{counts}");
            assert_eq!(counts["unsent"], 0, "{counts}");
        }
        // One row per second of the run (an event acknowledged just after the end may add a
        // last row); together they hold every event.
        let rows = fs::read_to_string(task.join("timeseries.csv")).unwrap();
        let mut lines = rows.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let attempted = header.iter().position(|c| *c == "attempted").unwrap();
        let per_second: Vec<u64> = lines
            .map(|l| l.split(',').nth(attempted).unwrap().parse().unwrap())
            .collect();
        assert!((3..=4).contains(&per_second.len()), "{rows}");
        assert_eq!(per_second.iter().sum::<u64>(), 3000, "{rows}");

        // The launcher from the same image (`docker run --entrypoint /usr/local/bin/launcher`).
        let run_dir = format!("/runs/{run_id}");
        let out = run_in_image(
            image,
            "launcher",
            reports.path(),
            &[],
            &[
                "/usr/local/bin/launcher",
                "merge",
                &run_dir,
                "--threshold",
                "error_rate<0.1%",
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "launcher merge in the image:\n{}",
            screen(&out)
        );
        let merged: serde_json::Value = serde_json::from_slice(
            &fs::read(reports.path().join(&run_id).join("merged/summary.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(merged["counts"]["acknowledged"], 3000, "{merged}");

        // Everything in the report directory was written by uid 65532.
        let mut files = Vec::new();
        walk(reports.path(), &mut files);
        assert!(files.len() >= 8, "{files:?}");
        for f in &files {
            let meta = fs::symlink_metadata(f).unwrap();
            assert_eq!(
                (meta.uid(), meta.gid()),
                (65532, 65532),
                "{} is owned by {}:{}",
                f.display(),
                meta.uid(),
                meta.gid()
            );
        }
    }

    /// `docker stop` sends the image's stop signal to its entrypoint, the worker itself (no shell
    /// in between): here the worker runs a 60 s scenario in the image, gets SIGTERM 3 s in,
    /// and must end at once with the exit code of a SIGTERM, its report stored and saying so.
    #[test]
    fn the_worker_in_the_image_stops_on_sigterm_and_stores_an_interrupted_report() {
        let image = image();
        let reports = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(reports.path(), Some(65532), Some(65532)).unwrap();
        let run_id = format!("image-stop-{}", std::process::id());
        let ctr = Container::from(image, "stop");
        let mut cmd = buildah();
        cmd.args(["run", "--isolation", "chroot", "--user", "65532:65532"])
            .arg("--volume")
            .arg(format!("{}:/runs:rw", reports.path().display()));
        for (k, v) in [
            ("FLEETLOAD_TARGET", "null"),
            ("FLEETLOAD_DURATION", "60s"),
            ("FLEETLOAD_RATE", "2000"),
            ("FLEETLOAD_REPORT_URL", "/runs"),
            ("FLEETLOAD_RUN_ID", run_id.as_str()),
            ("FLEETLOAD_TASK_ID", "t1"),
        ] {
            cmd.arg("--env").arg(format!("{k}={v}"));
        }
        let mut child = cmd
            .arg(&ctr.name)
            .arg("--")
            .arg("/usr/local/bin/worker")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("buildah run");
        // The worker process of the container (its environment names the run), once it has
        // started producing.
        let started = reports.path().join(&run_id).join("tasks/t1/started.json");
        let waiting = Instant::now();
        let worker = loop {
            let found: Vec<u32> = processes_with_env(&format!("FLEETLOAD_RUN_ID={run_id}"))
                .into_iter()
                .filter(|pid| {
                    fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|comm| comm.trim() == "worker")
                })
                .collect();
            if started.is_file() && found.len() == 1 {
                break found[0];
            }
            assert!(
                waiting.elapsed() < Duration::from_secs(60),
                "the worker did not start in the image (processes {found:?})"
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "buildah run ended early"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        std::thread::sleep(Duration::from_secs(3));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(worker as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM to the worker in the image");
        let signalled = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if signalled.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("the worker in the image did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(143), "{}", screen(&out));

        let task = reports.path().join(&run_id).join("tasks/t1");
        let summary: serde_json::Value =
            serde_json::from_slice(&fs::read(task.join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["outcome"]["status"], "interrupted", "{summary}");
        assert_eq!(summary["outcome"]["signal"], "SIGTERM", "{summary}");
        let duration = summary["duration_s"].as_f64().unwrap();
        assert!((2.0..20.0).contains(&duration), "{summary}");
        let counts = &summary["counts"];
        let n = |k: &str| counts[k].as_u64().unwrap();
        assert_eq!(n("planned"), n("attempted") + n("unsent"), "{counts}");
        assert_eq!(n("attempted"), n("acknowledged") + n("failed"), "{counts}");
        assert!(n("acknowledged") >= 4000, "{counts}");
    }

    #[test]
    fn the_image_runs_as_65532_with_the_worker_as_entrypoint_and_sigterm_as_stop_signal_has_no_shell_and_is_under_80_mb(
    ) {
        let image = image();
        let config = config(image);
        assert_eq!(config["User"], "65532:65532", "{config}");
        assert_eq!(
            config["Entrypoint"],
            serde_json::json!(["/usr/local/bin/worker"]),
            "{config}"
        );
        assert_eq!(config["StopSignal"], "SIGTERM", "{config}");
        assert_eq!(config["WorkingDir"], "/home/nonroot", "{config}");

        let ctr = Container::from(image, "inspect");
        let fs_root = ctr.mount();
        for shell in [
            "bin/sh",
            "usr/bin/sh",
            "bin/bash",
            "usr/bin/bash",
            "bin/dash",
            "bin/busybox",
        ] {
            assert!(
                fs::symlink_metadata(fs_root.join(shell)).is_err(),
                "the image has a shell: /{shell}"
            );
        }
        // One binary for both roles: the worker is a link to the launcher, which is stripped.
        let bin = fs_root.join("usr/local/bin");
        assert_eq!(
            fs::read_link(bin.join("worker")).ok(),
            Some(PathBuf::from("launcher")),
            "/usr/local/bin/worker is a link to the launcher"
        );
        let launcher = bin.join("launcher");
        let meta = fs::metadata(&launcher).expect("/usr/local/bin/launcher");
        assert!(
            meta.permissions().mode() & 0o111 != 0,
            "the launcher is not executable"
        );
        let sections = run(
            Command::new("readelf").arg("-S").arg(&launcher),
            "readelf -S",
        );
        assert!(
            !sections.contains(".symtab") && !sections.contains(".debug_"),
            "/usr/local/bin/launcher is not stripped ({} bytes)",
            meta.len()
        );

        let layers = layer_sizes(image);
        let base: Vec<String> = layer_sizes(RUNTIME_BASE)
            .into_iter()
            .map(|(digest, _)| digest)
            .collect();
        let total: u64 = layers.iter().map(|(_, size)| size).sum();
        let added: u64 = layers
            .iter()
            .filter(|(digest, _)| !base.contains(digest))
            .map(|(_, size)| size)
            .sum();
        eprintln!(
            "image test: image {:.1} MB, of which {:.1} MB on top of the base",
            total as f64 / 1e6,
            added as f64 / 1e6
        );
        assert!(
            total < MAX_IMAGE_BYTES,
            "image is {total} bytes, layers {layers:?}"
        );
        assert!(
            added + REAL_RUNTIME_BASE_BYTES < MAX_IMAGE_BYTES,
            "the Dockerfile adds {added} bytes: over {MAX_IMAGE_BYTES} on the real distroless base"
        );
    }
}
