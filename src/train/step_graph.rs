//! The training step as device work that can be captured into graphs and replayed.
//!
//! A generator step is `critic_iters()` critic iterations and one generator iteration. Each kind
//! of iteration is one fixed sequence of device work whose only per-iteration inputs live in
//! device memory:
//! - the real batch: a fixed buffer that `fill_real` overwrites before each critic iteration
//!   (outside any graph);
//! - the random draw counter (`randn_at`/`rand_uniform_at` read it; the iteration advances it
//!   with `counter_add`);
//! - Adam's step counts and bias corrections (`adam_at_inplace`);
//! - the step's scalars (losses, Wasserstein estimate, penalty), copied into fixed buffers.
//!
//! With `Gan::graph` on and a backend that supports graphs (CUDA, GPU or emulator), the first
//! step of a process runs eagerly (it compiles the kernels and sizes the memory pool); in the
//! second, the first critic iteration and the generator iteration are each captured into a graph,
//! and from then on every iteration is one graph launch. The WGAN schedule (how many critic
//! iterations) stays on the host, which launches the critic graph that many times.
//!
//! The host keeps its own copy of every counter (`draws`, the optimizers' `t`, the batch-norm
//! batch counts): the body of an iteration advances them as it runs, and a replay advances them by
//! the amounts the captured body did. They are what checkpoints store; the device counters are set
//! from them whenever they differ (after loading a checkpoint, say), outside any graph.
//!
//! Eager and replayed iterations issue the same kernels with the same arguments in the same order,
//! so `--graph on` and `--graph off` give bit-identical results.
//!
//! Memory: once both graphs run, a step allocates nothing from the device's memory pool, so the
//! pool is told to give back what the eager first step left in it (`Backend::keep_freed_memory`).
//!
//! When a capture, its instantiation or a graph launch fails, the run goes on without graphs: the
//! captured body never ran (capture records work instead of running it), so the host's counters are
//! put back as they were before the capture, the run's graphs are dropped (their memory
//! returned), the pool keeps freed memory again for the eager steps, and the iteration runs
//! eagerly. The result is bitwise that of `--graph off` (tests/gpu_graph.rs injects each failure
//! with `Cuda::fail_graph`).

use super::data_parallel::Role;
use super::gan::{critic_loss, discriminator_loss, generator_loss, Gan, LossKind, StepStats, STREAM_DRAWS};
use super::optim::OptimKind;
use crate::backend::Backend;

/// Host copies of the counters one iteration advances.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Mirrors {
    draws: u64,
    t_d: u64,
    t_g: u64,
    gen_batches: i64,
    critic_batches: i64,
}

impl Mirrors {
    fn minus(self, o: Mirrors) -> Mirrors {
        Mirrors {
            draws: self.draws - o.draws,
            t_d: self.t_d - o.t_d,
            t_g: self.t_g - o.t_g,
            gen_batches: self.gen_batches - o.gen_batches,
            critic_batches: self.critic_batches - o.critic_batches,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Critic = 0,
    Generator = 1,
}

/// The step's fixed device state.
pub(crate) struct DeviceStep<B: Backend> {
    /// The real batch of the next critic iteration.
    real: B::Tensor,
    draws: B::Counter,
    t_d: B::Counter,
    t_g: B::Counter,
    /// What the device counters hold: (draws, critic Adam t, generator Adam t); None for RMSProp.
    synced: (u64, Option<u64>, Option<u64>),
    /// critic loss, Wasserstein estimate, penalty, generator loss.
    stats: [B::Tensor; 4],
    /// Per phase: the graph's id and how far one run advances the host counters.
    graphs: [Option<(usize, Mirrors)>; 2],
    /// To drop the graphs with this state (a Gan dropped, a new batch shape).
    be: B,
}

impl<B: Backend> Drop for DeviceStep<B> {
    fn drop(&mut self) {
        for (id, _) in self.graphs.iter_mut().filter_map(Option::take) {
            warn_on(self.be.graph_drop(id), "dropping a graph");
        }
    }
}

/// Launches, allocations and host time of the last `train_step_into` (where the backend counts),
/// and the device memory held after it (where the backend reports it).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepProfile {
    pub counts: Option<crate::backend::cuda::DeviceCounts>,
    pub memory: Option<crate::backend::cuda::MemoryUse>,
    pub host_seconds: f64,
}

impl<B: Backend> Gan<B> {
    fn mirrors(&self) -> Mirrors {
        Mirrors {
            draws: self.draws,
            t_d: self.opt_d.t,
            t_g: self.opt_g.t,
            gen_batches: self.gen.batches_tracked.get(),
            critic_batches: self.critic.batches_tracked.get(),
        }
    }

    fn set_mirrors(&mut self, m: Mirrors) {
        self.draws = m.draws;
        self.opt_d.t = m.t_d;
        self.opt_g.t = m.t_g;
        self.gen.batches_tracked.set(m.gen_batches);
        self.critic.batches_tracked.set(m.critic_batches);
    }

    fn advance_mirrors(&mut self, d: Mirrors) {
        let m = self.mirrors();
        self.set_mirrors(Mirrors {
            draws: m.draws + d.draws,
            t_d: m.t_d + d.t_d,
            t_g: m.t_g + d.t_g,
            gen_batches: m.gen_batches + d.gen_batches,
            critic_batches: m.critic_batches + d.critic_batches,
        });
    }

    /// What the device counters must hold for the host's counters.
    fn device_view(&self) -> (u64, Option<u64>, Option<u64>) {
        let adam = |k: OptimKind, t: u64| matches!(k, OptimKind::Adam { .. }).then_some(t);
        (self.draws, adam(self.opt_d.kind, self.opt_d.t), adam(self.opt_g.kind, self.opt_g.t))
    }

    /// Makes the step's fixed device state for real batches of `shape` now (the first step
    /// otherwise does), e.g. before capturing a step from outside.
    pub fn prepare_step(&mut self, shape: &[usize]) {
        self.prepare_device(shape);
    }

    /// Creates the fixed device state for real batches of `shape` (again if the shape changed),
    /// and brings the device counters up to the host's.
    fn prepare_device(&mut self, shape: &[usize]) {
        let be = self.be.clone();
        if self.dev.as_ref().map_or(true, |d| be.shape(&d.real) != shape) {
            // Graphs of another batch shape are of no further use.
            self.dev = None;
            let one = || be.fill(&[1], 0.0);
            self.dev = Some(DeviceStep {
                real: be.fill(shape, 0.0),
                draws: be.counter(self.draws),
                t_d: be.counter(self.opt_d.t),
                t_g: be.counter(self.opt_g.t),
                synced: self.device_view(),
                stats: [one(), one(), one(), one()],
                graphs: [None, None],
                be: be.clone(),
            });
        }
        let view = self.device_view();
        let dev = self.dev.as_mut().expect("created above");
        if dev.synced != view {
            be.counter_set(&dev.draws, view.0);
            if let Some(t) = view.1 {
                be.counter_set(&dev.t_d, t);
            }
            if let Some(t) = view.2 {
                be.counter_set(&dev.t_g, t);
            }
            dev.synced = view;
        }
    }

    /// One generator step with its critic iterations before it. `real_shape` is the shape of a
    /// real batch and `fill_real(be, dst)` writes the next real batch into `dst` (which has that
    /// shape) before each critic iteration. Returns the step's scalars, still on the device (they
    /// live in fixed buffers that the next step overwrites: read them before it).
    pub fn train_step_into(&mut self, real_shape: &[usize], mut fill_real: impl FnMut(&B, &B::Tensor)) -> StepStats<B> {
        self.prepare_device(real_shape);
        let iters = self.critic_iters();
        let real = self.dev.as_ref().expect("prepared").real.clone();
        // After a failed launch (recorded by the backend, reported by the caller's `check`), no
        // more work is issued: later ops would run on the empty tensors a failed op leaves.
        for _ in 0..iters {
            if self.be.failed() {
                break;
            }
            fill_real(&self.be, &real);
            self.run_phase(Phase::Critic);
        }
        if !self.be.failed() {
            self.run_phase(Phase::Generator);
        }
        self.gen_steps += 1;
        self.steps_in_process += 1;
        let s = &self.dev.as_ref().expect("prepared").stats;
        let gp = matches!(self.cfg.loss, LossKind::WganGp { .. });
        StepStats {
            critic_loss: s[0].clone(),
            wdist: s[1].clone(),
            penalty: gp.then(|| s[2].clone()),
            gen_loss: s[3].clone(),
            critic_iters: iters,
        }
    }

    /// Runs one iteration: eagerly, or by capturing it into a graph, or by replaying that graph.
    fn run_phase(&mut self, phase: Phase) {
        // Data-parallel steps run eagerly: their collectives run on the host between kernels,
        // which a replayed graph would skip (run.rs says so when the run starts).
        let use_graph = self.graph && self.dist.is_none() && self.be.supports_graphs() && self.steps_in_process >= 1;
        if !use_graph {
            self.body(phase);
            return;
        }
        let slot = phase as usize;
        if let Some((id, delta)) = self.dev.as_ref().expect("prepared").graphs[slot] {
            match self.be.graph_launch(id) {
                Ok(()) => {
                    self.advance_mirrors(delta);
                    self.mark_synced();
                }
                Err(e) => self.give_up_graphs(&e, phase),
            }
            return;
        }
        let before = self.mirrors();
        if let Err(e) = self.be.graph_capture_begin() {
            self.give_up_graphs(&e, phase);
            return;
        }
        self.body(phase);
        let be = self.be.clone();
        let captured = be.graph_capture_end().and_then(|id| match be.graph_launch(id) {
            Ok(()) => Ok(id),
            Err(e) => {
                warn_on(be.graph_drop(id), "dropping a graph that failed to launch");
                Err(e)
            }
        });
        match captured {
            Ok(id) => {
                let delta = self.mirrors().minus(before);
                let dev = self.dev.as_mut().expect("prepared");
                dev.graphs[slot] = Some((id, delta));
                if dev.graphs.iter().all(Option::is_some) {
                    // From now on every iteration is a graph launch that allocates nothing from
                    // the pool: give back what the eager first step left there.
                    warn_on(be.keep_freed_memory(false), "trimming the memory pool");
                }
            }
            Err(e) => {
                // Nothing captured ran: the device counters are where they were, so undo the
                // host's counters and run the iteration eagerly (which advances both, and leaves
                // `synced` right again).
                self.set_mirrors(before);
                self.give_up_graphs(&e, phase);
            }
        }
    }

    /// Runs the rest of the run eagerly: drops the run's graphs (returning their memory), lets
    /// the pool keep freed memory again for the eager steps, and runs `phase` now.
    fn give_up_graphs(&mut self, e: &crate::Error, phase: Phase) {
        eprintln!("warning: CUDA graphs disabled for this run ({e}); continuing without them");
        self.graph = false;
        let be = self.be.clone();
        if let Some(dev) = self.dev.as_mut() {
            for (id, _) in dev.graphs.iter_mut().filter_map(Option::take) {
                warn_on(be.graph_drop(id), "dropping a graph");
            }
        }
        warn_on(be.keep_freed_memory(true), "letting the memory pool keep freed memory");
        self.body(phase);
    }

    /// The device counters now match the host's (each body advances both).
    fn mark_synced(&mut self) {
        let view = self.device_view();
        if let Some(d) = self.dev.as_mut() {
            d.synced = view;
        }
    }

    fn body(&mut self, phase: Phase) {
        match phase {
            Phase::Critic => self.critic_body(),
            Phase::Generator => self.generator_body(),
        }
        self.mark_synced();
    }

    /// One critic iteration on the fixed real batch (the device work of `critic_step`).
    fn critic_body(&mut self) {
        let be = self.be.clone();
        let dev = self.dev.as_ref().expect("prepared");
        let (real, draws, t_d, stats) = (dev.real.clone(), dev.draws.clone(), dev.t_d.clone(), dev.stats.clone());
        let n = be.shape(&real)[0];
        let (seed, nz) = (self.cfg.seed, self.cfg.nz);
        // Draw 0: the fakes' noise; draw 1: ε (WGAN-GP).
        let fake = {
            let z = self.my_rows(n, |rows| be.randn_at(&[rows, nz], seed, STREAM_DRAWS, &draws));
            let mut t = self.step_tape();
            let zv = t.constant(z);
            let params = self.gen.param_consts(&mut t);
            let fake = self.gen.forward_train(&mut t, &params, zv);
            t.value(fake).clone()
        };
        let mut t = self.step_tape();
        let (real, fake) = (t.constant(real), t.constant(fake));
        let params = self.critic.param_leaves(&mut t);
        let (gp, draws_used) = match self.cfg.loss {
            LossKind::WganGp { lambda, penalty } => {
                let eps =
                    t.constant(self.my_rows(n, |rows| be.rand_uniform_at(&[rows], seed, STREAM_DRAWS + 1, &draws)));
                (Some((eps, lambda, penalty)), 2)
            }
            LossKind::Wgan { .. } | LossKind::Gan { .. } => (None, 1),
        };
        let l = match self.cfg.loss {
            LossKind::Gan { .. } => discriminator_loss(&mut t, &self.critic.net, &params, real, fake),
            _ => critic_loss(&mut t, &self.critic.net, &params, real, fake, gp),
        };
        self.backward_reduced(&mut t, l.loss, &params, Role::Critic);
        self.opt_d.step_at(&be, &self.critic.params, &self.critic.grads, &t_d);
        be.copy_into_inplace(&stats[0], 0, t.value(l.loss));
        be.copy_into_inplace(&stats[1], 0, t.value(l.wdist));
        if let Some(p) = l.penalty {
            be.copy_into_inplace(&stats[2], 0, t.value(p));
        }
        be.counter_add(&draws, draws_used);
        self.draws += draws_used;
    }

    /// One generator iteration (the device work of `generator_step`, without `gen_steps`).
    fn generator_body(&mut self) {
        let be = self.be.clone();
        let dev = self.dev.as_ref().expect("prepared");
        let (draws, t_g, stats) = (dev.draws.clone(), dev.t_g.clone(), dev.stats.clone());
        let n = self.local_batch();
        let z = self.my_rows(n, |rows| be.randn_at(&[rows, self.cfg.nz], self.cfg.seed, STREAM_DRAWS, &draws));
        let mut t = self.step_tape();
        let zv = t.constant(z);
        let gp = self.gen.param_leaves(&mut t);
        let cp = self.critic.param_consts(&mut t);
        let fake = self.gen.forward_train(&mut t, &gp, zv);
        let d = self.critic.net.forward(&mut t, &cp, fake, crate::nn::BatchNormMode::Train(None));
        let loss = generator_loss(&mut t, d, self.cfg.loss);
        self.backward_reduced(&mut t, loss, &gp, Role::Generator);
        self.opt_g.step_at(&be, &self.gen.params, &self.gen.grads, &t_g);
        be.copy_into_inplace(&stats[3], 0, t.value(loss));
        be.counter_add(&draws, 1);
        self.draws += 1;
    }

    /// `train_step_into` with the launches, allocations and host time it took.
    pub fn train_step_profiled(
        &mut self,
        real_shape: &[usize],
        fill_real: impl FnMut(&B, &B::Tensor),
    ) -> (StepStats<B>, StepProfile) {
        let before = self.be.device_counts();
        let t0 = std::time::Instant::now();
        let stats = self.train_step_into(real_shape, fill_real);
        let host_seconds = t0.elapsed().as_secs_f64();
        let counts = match (before, self.be.device_counts()) {
            (Some(a), Some(b)) => Some(b.since(&a)),
            _ => None,
        };
        let memory = self.be.device_memory();
        (stats, StepProfile { counts, memory, host_seconds })
    }
}

/// Memory management only saves memory: a failure costs memory, not correctness, so it is a
/// warning (a failure that leaves the device broken is reported by the next `check`).
fn warn_on(r: crate::Result<()>, what: &str) {
    if let Err(e) = r {
        eprintln!("warning: {what}: {e}");
    }
}
