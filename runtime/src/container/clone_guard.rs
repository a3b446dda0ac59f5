//! The clone guard: libcontainer's calls that clone or `chdir` run one at a
//! time, each on a fresh thread, and a cloned child that leaves through
//! `exit` skips the daemon's C exit handlers. See ARCHITECTURE.md, "Fork/clone
//! beside a multi-threaded tokio runtime".

use std::sync::Mutex;

/// One process-wide lock around every libcontainer call that clones or
/// `chdir`s (build, start, tenant build). Measured here: concurrent creates hang or
/// fail; serialised, they run at ~100/s.
pub(crate) static LIBCONTAINER_LOCK: Mutex<()> = Mutex::new(());

pub(crate) fn libcontainer_lock() -> std::sync::MutexGuard<'static, ()> {
    let guard = LIBCONTAINER_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    CHILD_EXIT_GUARD.call_once(install_child_exit_guard);
    guard
}

/// Runs a libcontainer call that clones (`build` of an init or a tenant) on a
/// fresh thread of its own, under `LIBCONTAINER_LOCK`.
///
/// The cloned child is a copy of the calling thread alone. A glibc malloc
/// arena whose lock another thread held at that instant stays locked in the
/// child forever (raw `clone3` skips glibc's fork handlers, which would reset
/// them); seen as a create hanging in `realloc` inside a node, one time in a
/// few dozen. A fresh thread gets an arena no other thread uses (arenas are
/// shared only past `M_ARENA_MAX`, which the guard raises), and everything
/// the builder allocates before the clone lives in that arena.
pub(crate) fn on_clone_thread<R: Send>(call: impl FnOnce() -> R + Send) -> R {
    let _guard = libcontainer_lock();
    std::thread::scope(|scope| {
        match std::thread::Builder::new()
            .name("libcontainer-clone".into())
            .spawn_scoped(scope, call)
        {
            Ok(thread) => match thread.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            },
            // No thread to be had (resource limits): clone from this one.
            Err(_) => panic!("cannot spawn the libcontainer clone thread"),
        }
    })
}

static CHILD_EXIT_GUARD: std::sync::Once = std::sync::Once::new();
/// Arenas glibc may create before threads start sharing them: enough that
/// every thread, the clone threads above all, has one of its own.
const MALLOC_ARENAS_MAX: libc::c_int = 4096;
/// The pid of the process that installed the guard: the daemon.
static GUARDED_PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// libcontainer's cloned children (the intermediate and init processes)
/// leave through `std::process::exit`, which runs the C exit handlers the
/// daemon registered: C++ static destructors of libraries linked in beside
/// us. RocksDB's joins its timer thread, which does not exist in a clone, and
/// the child hangs forever (seen: every create in a node hung). This handler,
/// registered after those (handlers run last-registered first, and the
/// daemon opens its store before its first container), ends a cloned child
/// with `_exit` before any of them runs; in the daemon itself it does nothing.
fn install_child_exit_guard() {
    extern "C" fn exit_child_immediately(status: libc::c_int, _arg: *mut libc::c_void) {
        let daemon = GUARDED_PID.load(std::sync::atomic::Ordering::SeqCst);
        // SAFETY: getpid and _exit are async-signal-safe and touch no state.
        if unsafe { libc::getpid() } != daemon {
            unsafe { libc::_exit(status) };
        }
    }
    extern "C" {
        // glibc: like atexit, and the handler receives the exit status.
        fn on_exit(
            function: extern "C" fn(libc::c_int, *mut libc::c_void),
            arg: *mut libc::c_void,
        ) -> libc::c_int;
    }
    GUARDED_PID.store(
        std::process::id() as i32,
        std::sync::atomic::Ordering::SeqCst,
    );
    // SAFETY: mallopt only changes a tuning value of the allocator.
    if unsafe { libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS_MAX) } != 1 {
        tracing::warn!(
            "cannot raise M_ARENA_MAX; a container create may hang on a shared malloc arena"
        );
    }
    // SAFETY: registers a handler that only reads an atomic and may _exit.
    let registered = unsafe { on_exit(exit_child_immediately, std::ptr::null_mut()) };
    if registered != 0 {
        tracing::warn!(
            "cannot register the cloned-child exit guard; containers may hang at create"
        );
    }
}
