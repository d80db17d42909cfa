//! Which path a tensor's computation takes. CPU tensors of f32/f64 run the hand-written kernels
//! ([`crate::fused`], [`crate::signal`], [`crate::conv`], awt-ntk's ops, awt-nets' raw-buffer
//! path); every other device (CUDA) takes plain candle ops, which every such kernel is tested
//! against. [`generic_path`] makes the CPU take the other devices' path on the calling thread, so
//! that the path a GPU runs is tested on a machine without one: inside it every kernel refuses to
//! run ([`kernel_gate`]), as it would on a GPU, where it has no implementation.

use std::cell::Cell;

thread_local! {
    static GENERIC: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` on the device-generic path: on this thread the hand-written CPU kernels are off and
/// any that is still reached fails with an error naming it. Nests; restores the previous state
/// when `f` returns or panics.
pub fn generic_path<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            GENERIC.with(|g| g.set(self.0));
        }
    }
    let _restore = Restore(GENERIC.with(|g| g.replace(true)));
    f()
}

/// True when the hand-written CPU kernels apply to `t`: a CPU tensor of f32 or f64, outside
/// [`generic_path`]. Every hand-written kernel is reached through this test; the other branch is
/// the device-generic path.
pub fn cpu_kernels(t: &candle_core::Tensor) -> bool {
    t.device().is_cpu() && !on_generic_path() && matches!(t.dtype(), candle_core::DType::F32 | candle_core::DType::F64)
}

/// True inside [`generic_path`] on this thread.
pub fn on_generic_path() -> bool {
    GENERIC.with(Cell::get)
}

/// Every hand-written kernel passes through here before it reads a buffer: an error inside
/// [`generic_path`], where a GPU would have no implementation to run.
pub fn kernel_gate(what: &str) -> candle_core::Result<()> {
    if on_generic_path() {
        candle_core::bail!("{what}: a CPU-only kernel was reached on the device-generic path");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generic_path_is_scoped_to_the_call_and_survives_a_panic() {
        assert!(!on_generic_path());
        generic_path(|| {
            assert!(on_generic_path());
            assert!(kernel_gate("x").is_err());
            generic_path(|| assert!(on_generic_path()));
            assert!(on_generic_path());
        });
        assert!(!on_generic_path() && kernel_gate("x").is_ok());
        let caught = std::panic::catch_unwind(|| generic_path(|| panic!("inside")));
        assert!(caught.is_err() && !on_generic_path());
        // Another thread has its own state.
        generic_path(|| std::thread::spawn(|| assert!(!on_generic_path())).join().unwrap());
    }
}
