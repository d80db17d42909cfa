//! A grid of the smoke preset with `[dynamics]` in a temporary folder, run by a stand-in for
//! `awt` that makes each step's output (`dynamics` fails while the dense run has no epochs), for
//! the runner's tests of how a comparison meets its dense run.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::opts::Opts;
use crate::plan::{Run, expand};
use crate::spec::{self, Spec};
use crate::workspace::root;

pub(super) struct Grid {
    pub tmp: PathBuf,
    pub fake: PathBuf,
    pub spec: Spec,
    pub o: Opts,
    pub plan: Vec<Run>,
}

impl Grid {
    /// The grid in a fresh folder named after `tag`.
    pub fn new(tag: &str) -> Grid {
        let tmp = std::env::temp_dir().join(format!("awt-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        let fake = tmp.join("awt");
        let eval = crate::records::test_eval(10, 9, 5);
        let script = format!(
            "#!/bin/sh\nout=; json=; dense=; prev=\nfor a in \"$@\"; do case \"$prev\" in --out) out=$a;; --json) json=$a;; --dense) dense=$a;; esac; prev=$a; done\n\
case $1 in\n  train) mkdir -p \"$out/epochs\" && touch \"$out/model.safetensors\";;\n  eval) echo '{eval}' > \"$json\";;\n\
  inspect) echo '{{}}' > \"$json\";;\n  dynamics) [ -d \"$dense/epochs\" ] || {{ echo 'no epoch checkpoints' >&2; exit 1; }}; touch \"$out\";;\n\
  *) touch \"$out\";;\nesac\n"
        );
        std::fs::write(&fake, script).unwrap();
        Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
        let text = std::fs::read_to_string(root().join("experiments/smoke.toml"))
            .unwrap()
            .replace("name = \"smoke\"", "name = \"t\"")
            + "\n[dynamics]\nprobe = 4\nsteps = 1\n";
        let spec = spec::parse(&text, Path::new("t.toml"), "t").unwrap();
        let o = Opts::parse(&["--preset".into(), "t".into(), "--out".into(), tmp.display().to_string()]).unwrap();
        let plan = expand(&spec, "d", &tmp, &|_, _| None).unwrap();
        Grid { tmp, fake, spec, o, plan }
    }

    /// The random ticket's run and the dense run it is compared with.
    pub fn random_and_dense(&self) -> (&Run, &Run) {
        let random = self.plan.iter().find(|r| r.method == awt_runs::Method::Random).unwrap();
        let dense = self.plan.iter().find(|r| r.method.is_dense()).unwrap();
        assert_eq!(random.dense_dir.as_ref(), Some(&dense.dir));
        (random, dense)
    }
}

impl Drop for Grid {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}
