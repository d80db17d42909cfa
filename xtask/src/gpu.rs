//! `cargo xtask gpu-build`: the `awt` binary with candle's CUDA backend, built on a machine without
//! CUDA, from the CUDA 13.0 toolkit as PyPI serves it (no system install), for a machine whose
//! driver speaks CUDA 13.0 (driver 580) and whose CUDA 13 libraries are found at run time.
//!
//! Steps, each skipped when its output is already there (everything lives under `target/cuda/`):
//! 1. `python3 -m pip download` the pinned wheels ([`WHEELS`]) into `target/cuda/wheels/`;
//! 2. unpack them into one toolkit tree (`target/cuda/toolkit/nvidia/cu13`: `bin/nvcc`, `nvvm/`,
//!    `include/`, `lib/`), with the unversioned library names the linker looks for;
//! 3. a stub `libcuda.so` (soname `libcuda.so.1`, every `cu*` function of the toolkit's `cuda.h`
//!    defined and returning an error) in `lib/stubs`: the driver library is linked against, never
//!    shipped — the machine that runs the binary has the real one;
//! 4. `cargo rustc -p awt-cli --bin awt --features cuda` with the toolkit on `PATH`/`CUDA_HOME`,
//!    `CUDA_COMPUTE_CAP`, and libcuda kept as a needed library (`--no-as-needed` around `-lcuda`:
//!    with the default `--as-needed` the link drops it and the binary fails at start with
//!    `undefined symbol: cuCtxGetCurrent`);
//! 5. the binary to `target/cuda/awt` and, xz-compressed (the embedded PTX compresses well), to
//!    `target/cuda/awt.xz` — what travels to a GPU machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::workspace::root;

/// The CUDA 13.0 line, pinned as one: the PTX that nvcc/nvvm 13.0 write (ISA 9.0) is what a
/// CUDA 13.0 driver (580) can load; a 13.5 `nvidia-nvvm` writes PTX 9.5, which 13.0's ptxas and
/// driver refuse. cuBLAS 13.0.2 and cuRAND 10.4.0 are the libraries of the 13.0 release.
pub(crate) const WHEELS: [(&str, &str); 8] = [
    ("nvidia-cuda-nvcc", "13.0.88"),
    ("nvidia-nvvm", "13.0.88"),
    ("nvidia-cuda-crt", "13.0.88"),
    ("nvidia-cuda-runtime", "13.0.96"),
    ("nvidia-cuda-cccl", "13.0.85"),
    ("nvidia-cublas", "13.0.2.14"),
    ("nvidia-curand", "10.4.0.35"),
    ("nvidia-cuda-nvrtc", "13.0.88"),
];

/// The libraries the link may name (cudarc's `dynamic-linking` and candle's kernels), by the
/// versioned file the wheels ship; `--as-needed` keeps those the binary calls (libcublas, libcudart,
/// libcurand on 2026-12-04: `readelf -d target/cuda/awt`).
const LINKED: [&str; 5] =
    ["libcublas.so.13", "libcublasLt.so.13", "libcudart.so.13", "libcurand.so.10", "libnvrtc.so.13"];

struct Opts {
    compute_cap: String,
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts { compute_cap: "90".into() };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--compute-cap" => {
                let v = it.next().context("--compute-cap needs a value (90 for an H100/H200)")?;
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    bail!("--compute-cap {v}: write the compute capability as digits (90 for sm_90)");
                }
                o.compute_cap = v.clone();
            }
            other => bail!("gpu-build: unknown flag `{other}`"),
        }
    }
    Ok(o)
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    eprintln!("$ {what}");
    let status = cmd.status().with_context(|| format!("cannot run {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// The wheel file of `(name, version)` in `dir`, if downloaded.
fn wheel_in(dir: &Path, (name, version): (&str, &str)) -> Option<PathBuf> {
    let prefix = format!("{}-{version}-", name.replace('-', "_"));
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".whl")))
}

/// Steps 1–2: the toolkit tree, downloading and unpacking what is missing. Returns its root.
fn toolkit(base: &Path) -> Result<PathBuf> {
    let wheels = base.join("wheels");
    std::fs::create_dir_all(&wheels)?;
    let missing: Vec<String> =
        WHEELS.iter().filter(|w| wheel_in(&wheels, **w).is_none()).map(|(n, v)| format!("{n}=={v}")).collect();
    if !missing.is_empty() {
        eprintln!("downloading the CUDA 13.0 wheels ({} of them, about 0.7 GB)", missing.len());
        run(
            Command::new("python3")
                .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet", "-d"])
                .arg(&wheels)
                .args(&missing),
            "python3 -m pip download (the CUDA wheels)",
        )?;
    }
    let tree = base.join("toolkit");
    let stamp = tree.join("awt-unpacked.txt");
    let wanted: String = WHEELS.iter().map(|(n, v)| format!("{n}=={v}\n")).collect();
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        if tree.exists() {
            std::fs::remove_dir_all(&tree).with_context(|| format!("cannot clear {}", tree.display()))?;
        }
        for w in WHEELS {
            let whl = wheel_in(&wheels, w).with_context(|| format!("{}=={} was not downloaded", w.0, w.1))?;
            run(
                Command::new("python3").args(["-m", "zipfile", "-e"]).arg(&whl).arg(&tree),
                &format!("unpack {}", w.0),
            )?;
        }
        std::fs::write(&stamp, &wanted)?;
    }
    let cu = tree.join("nvidia").join("cu13");
    if !cu.join("bin").join("nvcc").exists() {
        bail!("{}: the unpacked wheels have no bin/nvcc", cu.display());
    }
    // zipfile does not keep the executable bits.
    for dir in [cu.join("bin"), cu.join("nvvm").join("bin")] {
        for e in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
            let p = e?.path();
            if p.is_file() {
                make_executable(&p)?;
            }
        }
    }
    for lib in LINKED {
        let target = cu.join("lib").join(lib);
        if !target.exists() {
            bail!("{}: missing from the wheels", target.display());
        }
        let plain = cu.join("lib").join(format!("{}.so", lib.split(".so").next().unwrap_or(lib)));
        if std::fs::symlink_metadata(&plain).is_err() {
            std::os::unix::fs::symlink(lib, &plain).with_context(|| format!("cannot link {}", plain.display()))?;
        }
    }
    Ok(cu)
}

fn make_executable(p: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut perm = std::fs::metadata(p)?.permissions();
    perm.set_mode(perm.mode() | 0o755);
    std::fs::set_permissions(p, perm).with_context(|| format!("cannot make {} executable", p.display()))
}

/// The driver API's function names as `cuda.h` declares them after preprocessing (so that the
/// versioned names the macros select, `cuCtxCreate_v4`, are the ones listed).
pub(crate) fn driver_functions(preprocessed: &str) -> Vec<String> {
    let mut names = std::collections::BTreeSet::new();
    let b = preprocessed.as_bytes();
    let mut i = 0;
    while i + 3 < b.len() {
        let starts_word = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if starts_word && b[i] == b'c' && b[i + 1] == b'u' && b[i + 2].is_ascii_uppercase() {
            let end = (i..b.len()).find(|&j| !(b[j].is_ascii_alphanumeric() || b[j] == b'_')).unwrap_or(b.len());
            let rest = preprocessed[end..].trim_start();
            if rest.starts_with('(') {
                names.insert(preprocessed[i..end].to_string());
            }
            i = end;
        } else {
            i += 1;
        }
    }
    names.into_iter().collect()
}

/// Step 3: `lib/stubs/libcuda.so`.
fn libcuda_stub(cu: &Path, base: &Path) -> Result<()> {
    let stub = cu.join("lib").join("stubs").join("libcuda.so");
    if stub.exists() {
        return Ok(());
    }
    let out = Command::new("cc")
        .args(["-E", "-P"])
        .arg(cu.join("include").join("cuda.h"))
        .arg("-I")
        .arg(cu.join("include"))
        .output()
        .context("cannot run cc -E (a C compiler is needed for the libcuda stub)")?;
    if !out.status.success() {
        bail!("cc -E cuda.h failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let names = driver_functions(&String::from_utf8_lossy(&out.stdout));
    if names.len() < 100 || !names.iter().any(|n| n == "cuCtxGetCurrent") {
        bail!(
            "cuda.h declares {} driver functions (cuCtxGetCurrent among them?): not the header expected",
            names.len()
        );
    }
    let src = base.join("libcuda-stub.c");
    let body: String =
        names.iter().map(|n| format!("int {n}(void) {{ return 999; /* CUDA_ERROR_UNKNOWN */ }}\n")).collect();
    std::fs::write(&src, format!("/* Link-time stand-in for the driver library; never shipped. */\n{body}"))?;
    std::fs::create_dir_all(stub.parent().expect("stubs folder"))?;
    run(
        Command::new("cc").args(["-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o"]).arg(&stub).arg(&src),
        "cc -shared (the libcuda stub)",
    )
}

pub(crate) fn gpu_build(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    let base = root().join("target").join("cuda");
    let cu = toolkit(&base)?;
    libcuda_stub(&cu, &base)?;
    let path = format!("{}:{}", cu.join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build_dir = base.join("build");
    run(
        Command::new(&cargo)
            .args(["rustc", "--release", "-p", "awt-cli", "--bin", "awt", "--features", "cuda", "--target-dir"])
            .arg(&build_dir)
            .args(["--", "-C", "link-arg=-Wl,--push-state,--no-as-needed,-lcuda,--pop-state"])
            .current_dir(root())
            .env("CUDA_HOME", &cu)
            .env("PATH", path)
            .env("CUDA_COMPUTE_CAP", &o.compute_cap)
            .env("CUDARC_CUDA_VERSION", "13000"),
        "cargo rustc -p awt-cli --bin awt --features cuda",
    )?;
    let bin = base.join("awt");
    std::fs::copy(build_dir.join("release").join("awt"), &bin).context("cannot copy the CUDA binary")?;
    let xz = base.join("awt.xz");
    let _ = std::fs::remove_file(&xz);
    run(Command::new("xz").args(["-k", "-6", "-T1"]).arg(&bin), "xz the binary")?;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len() as f64 / (1 << 20) as f64).unwrap_or(f64::NAN);
    eprintln!(
        "built {} ({:.1} MiB; {:.1} MiB as {}), sm_{} PTX/SASS, for CUDA 13.0 drivers (≥ 580); it needs \
         libcuda.so.1 (the driver) and the CUDA 13 libraries it names (`readelf -d`; of {}) on its \
         library path where it runs",
        bin.display(),
        size(&bin),
        size(&xz),
        xz.display(),
        o.compute_cap,
        LINKED.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_driver_functions_are_the_declared_names_after_the_macros() {
        let pre = "typedef int CUresult;\nCUresult cuInit(unsigned int Flags);\nCUresult  cuCtxCreate_v4 (CUcontext *p);\n\
                   typedef struct CUctx_st *CUcontext;\nCUresult cuGetProcAddress_v2(const char *s, void **p);\n\
                   int x = docuNothing(1);";
        assert_eq!(driver_functions(pre), ["cuCtxCreate_v4", "cuGetProcAddress_v2", "cuInit"]);
    }

    #[test]
    fn the_pins_are_one_cuda_line_and_bad_flags_are_named() {
        for (name, version) in WHEELS {
            let want = if name == "nvidia-curand" { "10.4." } else { "13.0." };
            assert!(version.starts_with(want), "{name}=={version} is not of the CUDA 13.0 release");
        }
        let e = parse(&["--compute-cap".into(), "sm90".into()]).err().unwrap().to_string();
        assert!(e.starts_with("--compute-cap sm90:"), "{e}");
        assert!(parse(&["--fast".into()]).is_err());
    }
}
