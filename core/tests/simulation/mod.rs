//! Deterministic simulation of a whole engine on one thread (STYLE §10).
//!
//! One seed decides everything: the engine's configuration, the workload, the faults, the
//! clock and the order in which shards run. The engine runs with manually stepped shards
//! ([`EngineConfig::manual_shards`]) on the simulated disk ([`SimDisk`]) behind an
//! [`Interposer`] (power loss at any storage call, latency), with a [`ManualClock`]; nothing
//! else runs, so a seed replays exactly.
//!
//! # Structure
//!
//! - [`World`]: the machine — disk, clock, engine, what faults were injected, counters, trace.
//! - [`Feature`]: one area of behaviour with its own operations, reference model and
//!   invariants. [`log::LogFeature`] (topics, appends, reads, lookups, retention) and
//!   [`faults::FaultFeature`] (EIO, ENOSPC, bit flips, short I/O, latency) are the first two.
//! - [`Simulation`]: picks an operation per step (weighted, from every feature and from the
//!   lifecycle: clean restarts, power losses now or at a later storage call, clock jumps),
//!   runs the shards in a seeded order, calls every feature's cheap checks after each step,
//!   and runs restarts (each feature harvests, then verifies in depth after recovery).
//!
//! A later feature (consumer groups, dead-letter routing) plugs in by implementing
//! [`Feature`]: its operations are drawn with the others, its `check` runs every step, its
//! `on_shutdown`/`after_restart` see every crash and restart. Nothing else needs to change.
//!
//! A failed check panics; the caller ([`run_seed`]) reports the seed, the replay command and
//! the last steps of the trace.

#![allow(dead_code)] // Each test binary including this module uses a different part of it.

pub mod faults;
pub mod interposer;
pub mod log;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tidelog_core::{Engine, EngineConfig, SegmentPreparation};
use tidelog_io::ManualClock;
use tidelog_io::sim::{FaultKind, OpKind, SimConfig, SimDisk, SimRng};

pub use interposer::{Interposer, Latency};

/// Where the engine keeps its data on the simulated disk.
pub const DATA_DIR: &str = "/sim/data";

/// Wall-clock time at which every seed starts.
const EPOCH_MS: i64 = 1_760_000_000_000;

/// Lines of trace kept for a failure report.
const TRACE_LINES: usize = 300;

/// How one seed sets up the machine: drawn from the seed alone.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub steps: u64,
    pub shards: usize,
    pub preparation: SegmentPreparation,
    pub direct_io: bool,
    pub write_buffer_bytes: usize,
    pub maintenance_interval_ms: u64,
    pub latency: Latency,
    pub short_write_probability: f64,
    pub short_read_probability: f64,
    /// Inject EIO, ENOSPC and bit flips (some seeds run without, so that every invariant is
    /// checked at full strength on them).
    pub faults: bool,
    /// Vary shard count, preparation and direct I/O across restarts.
    pub vary_config_on_restart: bool,
}

impl Scenario {
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = SimRng::new(seed ^ 0x5CE7_A210);
        let preparation =
            [SegmentPreparation::Grow, SegmentPreparation::Fallocate, SegmentPreparation::ZeroFill]
                [rng.index(3)];
        let latency = match rng.below(4) {
            0 => Latency::default(),
            1 => Latency { hold_probability: 0.05, hold_reaps_max: 8, defer_probability: 0.1 },
            2 => Latency { hold_probability: 0.2, hold_reaps_max: 40, defer_probability: 0.3 },
            _ => Latency { hold_probability: 0.5, hold_reaps_max: 4, defer_probability: 0.5 },
        };
        let short = |rng: &mut SimRng| [0.0, 0.0, 0.02, 0.2][rng.index(4)];
        Scenario {
            steps: rng.between(120, 260),
            shards: rng.between(1, 4) as usize,
            preparation,
            direct_io: rng.coin(),
            write_buffer_bytes: 4096 * [1, 2, 4, 16, 64][rng.index(5)],
            maintenance_interval_ms: [50, 300, 1000][rng.index(3)],
            latency,
            short_write_probability: short(&mut rng),
            short_read_probability: short(&mut rng),
            faults: rng.below(4) != 0,
            vary_config_on_restart: rng.coin(),
        }
    }
}

/// The engine settings of the current incarnation (they may change across restarts).
#[derive(Clone, Debug)]
pub struct EngineSettings {
    pub shards: usize,
    pub preparation: SegmentPreparation,
    pub direct_io: bool,
}

/// A batch damaged by a bit flip: reads of it must fail with `Error::Corrupt` naming this
/// file and position; every other batch must read back intact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    pub path: PathBuf,
    /// Byte position of the batch in the log.
    pub position: u64,
    pub base_offset: u64,
    pub last_offset: u64,
    /// Byte of the file whose bit was flipped.
    pub flipped_at: u64,
    /// Every batch of the segment before the flip: (position, base offset, last offset).
    pub batches: Vec<(u64, u64, u64)>,
}

impl Damage {
    /// May a read at `offset` fail on this damage? A read of the damaged batch must; a read
    /// of a later batch may, if its walk from the index entry before it has to cross the
    /// damaged batch (a damaged length or offset field cannot be walked past).
    pub fn may_fail_read_of(&self, offset: u64) -> bool {
        if (self.base_offset..=self.last_offset).contains(&offset) {
            return true;
        }
        let Some(&(position, _, _)) =
            self.batches.iter().find(|(_, base, last)| (*base..=*last).contains(&offset))
        else {
            return false;
        };
        let largest = self.batches.windows(2).map(|w| w[1].0 - w[0].0).max().unwrap_or(0);
        let reach = u64::from(tidelog_core::limits::INDEX_INTERVAL_BYTES) + largest;
        offset > self.last_offset && position.saturating_sub(self.position) <= reach
    }
}

/// Faults injected in the current engine incarnation, and damage that outlives restarts.
#[derive(Debug, Default)]
pub struct FaultLedger {
    /// Fault rules were injected for operations under these paths.
    pub targets: Vec<PathBuf>,
    /// The disk's capacity was limited at some point.
    pub capacity_limited: bool,
    /// Batches damaged by bit flips (until their segment is deleted).
    pub damage: Vec<Damage>,
}

impl FaultLedger {
    /// May the partition (or topic) stored in `dir` fail in this incarnation?
    pub fn may_fail(&self, dir: &Path) -> bool {
        self.capacity_limited
            || self.targets.iter().any(|t| dir.starts_with(t) || t.starts_with(dir))
    }

    /// Damaged batches of the partition stored in `dir`.
    pub fn damage_in<'a>(&'a self, dir: &'a Path) -> impl Iterator<Item = &'a Damage> + 'a {
        self.damage.iter().filter(move |d| d.path.starts_with(dir))
    }
}

/// Named counters, for the report. Features add their own.
#[derive(Clone, Debug, Default)]
pub struct Counters(pub BTreeMap<String, u64>);

impl Counters {
    pub fn add(&mut self, name: &str, n: u64) {
        *self.0.entry(name.to_string()).or_default() += n;
    }
    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }
    pub fn merge(&mut self, other: &Counters) {
        for (name, n) in &other.0 {
            self.add(name, *n);
        }
    }
}

/// How the engine went down before a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restart {
    /// `Engine::close` completed before the restart (everything written was synced).
    pub clean_close: bool,
    /// A power loss happened (instead of, or after, the close).
    pub power_lost: bool,
}

/// The simulated machine.
pub struct World {
    pub seed: u64,
    /// Workload decisions.
    pub rng: SimRng,
    pub disk: SimDisk,
    pub clock: ManualClock,
    pub interposer: Interposer,
    pub scenario: Scenario,
    pub settings: EngineSettings,
    engine: Option<Engine>,
    pub faults: FaultLedger,
    pub counters: Counters,
    pub step: u64,
    /// Engine incarnations so far (1 after the first open).
    pub incarnation: u64,
    /// The largest wall-clock time so far (the clock may be set back).
    pub wall_max_ms: i64,
    trace: VecDeque<String>,
    verbose: bool,
}

impl World {
    fn new(seed: u64) -> Self {
        let scenario = Scenario::from_seed(seed);
        let disk = SimDisk::with_config(
            seed,
            SimConfig {
                short_write_probability: scenario.short_write_probability,
                short_read_probability: scenario.short_read_probability,
                ..SimConfig::default()
            },
        );
        let interposer = Interposer::new(disk.clone(), seed, scenario.latency);
        let settings = EngineSettings {
            shards: scenario.shards,
            preparation: scenario.preparation,
            direct_io: scenario.direct_io,
        };
        World {
            seed,
            rng: SimRng::new(seed),
            disk,
            clock: ManualClock::new(EPOCH_MS),
            interposer,
            scenario,
            settings,
            engine: None,
            faults: FaultLedger::default(),
            counters: Counters::default(),
            step: 0,
            incarnation: 0,
            wall_max_ms: EPOCH_MS,
            trace: VecDeque::new(),
            verbose: std::env::var_os("TIDELOG_SIM_VERBOSE").is_some(),
        }
    }

    /// The running engine.
    ///
    /// # Panics
    /// Between a shutdown and the next successful open.
    pub fn engine(&self) -> &Engine {
        self.engine.as_ref().expect("the engine is running")
    }

    /// A power loss fired (at an armed storage call) and the engine has not been restarted.
    pub fn crashed(&self) -> bool {
        self.interposer.crashed()
    }

    /// Note what happened, for the failure report (and stderr with `TIDELOG_SIM_VERBOSE`).
    pub fn trace(&mut self, line: impl Into<String>) {
        let line = format!("[{} #{}] {}", self.step, self.incarnation, line.into());
        if self.verbose {
            eprintln!("{line}");
        }
        if self.trace.len() == TRACE_LINES {
            self.trace.pop_front();
        }
        self.trace.push_back(line);
    }

    pub fn count(&mut self, name: &str, n: u64) {
        self.counters.add(name, n);
    }

    /// Advance the clock by `ms`.
    pub fn advance_ms(&mut self, ms: u64) {
        self.clock.advance_ms(ms);
        self.wall_max_ms = self.wall_max_ms.max(tidelog_io::Clock::now_ms(&self.clock));
    }

    pub fn now_ms(&self) -> i64 {
        tidelog_io::Clock::now_ms(&self.clock)
    }

    fn config(&self) -> EngineConfig {
        let mut config = EngineConfig::default()
            .shards(self.settings.shards)
            .manual_shards(true)
            .pin_shards(false)
            .storage(Arc::new(self.interposer.clone()))
            .clock(Arc::new(self.clock.clone()))
            .segment_preparation(self.settings.preparation)
            .direct_io(self.settings.direct_io)
            // Idle syncs as system calls (`EngineConfig::inline_sync`) on every other seed.
            .inline_sync(self.seed % 2 == 1);
        config.write_buffer_bytes = self.scenario.write_buffer_bytes;
        config.maintenance_interval_ms = self.scenario.maintenance_interval_ms;
        config
    }

    /// Run the shards for a while, in an order the seed picks: all of them, one of them
    /// several times (the others stall), or none.
    pub fn run_shards(&mut self) {
        let Some(engine) = self.engine.as_ref() else { return };
        match self.rng.below(6) {
            0 => {}
            1 | 2 => {
                let shard = self.rng.index(engine.shard_count());
                for _ in 0..self.rng.between(1, 6) {
                    engine.step(shard);
                }
            }
            _ => {
                for _ in 0..self.rng.between(1, 4) {
                    engine.step_all();
                }
            }
        }
    }

    /// Step every shard until nothing moves for a while (completions held back by the
    /// interposer come back within its bound), so closes and group commits finish.
    pub fn settle(&mut self) {
        let Some(engine) = self.engine.as_ref() else { return };
        let quiet_needed = 2 * self.interposer.latency().hold_reaps_max + 8;
        let mut quiet = 0;
        for _ in 0..10_000 {
            if engine.step_all() {
                quiet = 0;
            } else {
                quiet += 1;
                if quiet > quiet_needed {
                    return;
                }
            }
        }
        panic!("the engine did not settle within 10,000 rounds (livelock?)");
    }
}

/// One area of behaviour under simulation: operations, a reference model, invariants.
pub trait Feature {
    fn name(&self) -> &'static str;

    /// Called once the engine is first open.
    fn start(&mut self, world: &mut World);

    /// The operations this feature offers now, with their weights (0: not now).
    fn operations(&self, world: &World) -> Vec<(&'static str, u32)>;

    /// Run one operation (as named by `operations`). May submit work and return before it
    /// completes; a power loss may fire meanwhile ([`World::crashed`]): then return.
    fn run(&mut self, operation: &'static str, world: &mut World);

    /// Cheap invariants, after every step (the engine is running and has not crashed).
    fn check(&mut self, world: &mut World);

    /// The engine is about to go down (`clean_close` unless it is a power loss, which may
    /// already have happened): settle what can be settled while it still runs.
    fn before_shutdown(&mut self, world: &mut World, clean_close: bool);

    /// The engine is gone (every request it held has been answered): harvest.
    fn on_shutdown(&mut self, world: &mut World, restart: Restart);

    /// The engine is open again after `restart`: verify in depth, then continue from what
    /// recovery kept.
    fn after_restart(&mut self, world: &mut World, restart: Restart);
}

/// Lifecycle operations the simulation itself offers.
const LIFECYCLE: [(&str, u32); 5] =
    [("restart", 2), ("crash", 2), ("crash_later", 2), ("clock_jump", 3), ("clock_back", 1)];

/// What one seed did.
#[derive(Debug, Default)]
pub struct SeedReport {
    pub counters: Counters,
    /// Every file's current bytes at the end, sorted by path (for the determinism check).
    pub image: Vec<(PathBuf, Vec<u8>)>,
}

/// One seed's run.
pub struct Simulation {
    pub world: World,
    features: Vec<Box<dyn Feature>>,
}

impl Simulation {
    pub fn new(seed: u64, features: Vec<Box<dyn Feature>>) -> Self {
        Self { world: World::new(seed), features }
    }

    /// The features every simulation runs.
    pub fn default_features() -> Vec<Box<dyn Feature>> {
        vec![Box::new(log::LogFeature::default()), Box::new(faults::FaultFeature::default())]
    }

    /// The last lines of the trace.
    pub fn trace_tail(&self) -> Vec<String> {
        self.world.trace.iter().cloned().collect()
    }

    pub fn run(&mut self) -> SeedReport {
        let scenario = self.world.scenario.clone();
        self.world.trace(format!("scenario {scenario:?}"));
        self.open(false);
        for feature in &mut self.features {
            feature.start(&mut self.world);
        }
        self.check();
        for step in 1..=scenario.steps {
            self.world.step = step;
            self.step();
        }
        self.world.step += 1;
        self.finish()
    }

    fn step(&mut self) {
        let mut choices: Vec<(usize, &'static str, u32)> = Vec::new();
        for (name, weight) in LIFECYCLE {
            choices.push((usize::MAX, name, weight));
        }
        for (index, feature) in self.features.iter().enumerate() {
            for (name, weight) in feature.operations(&self.world) {
                choices.push((index, name, weight));
            }
        }
        let total: u64 = choices.iter().map(|c| u64::from(c.2)).sum();
        let mut pick = self.world.rng.below(total);
        let &(index, name, _) = choices
            .iter()
            .find(|c| {
                if pick < u64::from(c.2) {
                    true
                } else {
                    pick -= u64::from(c.2);
                    false
                }
            })
            .expect("the pick is below the total weight");
        self.world.count(&format!("op {name}"), 1);
        if index == usize::MAX {
            self.lifecycle(name);
        } else {
            self.features[index].run(name, &mut self.world);
        }
        if !self.world.crashed() {
            self.world.run_shards();
            let ms = match self.world.rng.below(10) {
                0..=5 => self.world.rng.below(5),
                6..=8 => self.world.rng.below(60),
                _ => self.world.rng.between(100, 1500),
            };
            self.world.advance_ms(ms);
        }
        self.check();
    }

    /// Every feature's cheap checks; a power loss that fired meanwhile restarts the engine.
    fn check(&mut self) {
        if let Some(path) = std::env::var_os("TIDELOG_SIM_WATCH") {
            // A debugging aid: trace one file's length and CRC, current and durable.
            let path = Path::new(&path);
            let disk = &self.world.disk;
            let summary = |bytes: std::io::Result<Vec<u8>>| {
                bytes.map(|b| format!("{} bytes, crc {:08x}", b.len(), crc32c::crc32c(&b)))
            };
            let line = format!(
                "watch {}: now {:?}, durable {:?}",
                path.display(),
                summary(disk.read(path)),
                summary(disk.read_durable(path))
            );
            self.world.trace(line);
        }
        for i in 0..self.features.len() {
            if self.world.crashed() {
                break;
            }
            self.features[i].check(&mut self.world);
        }
        if self.world.crashed() {
            self.world.trace("power loss fired");
            self.restart(false);
        }
        self.world.count("steps", 1);
    }

    fn lifecycle(&mut self, name: &str) {
        match name {
            "restart" => self.restart(true),
            "crash" => self.restart(false),
            "crash_later" => {
                if !self.world.interposer.is_armed() {
                    let calls = self.world.rng.between(1, 400);
                    self.world.trace(format!("power loss armed in {calls} storage calls"));
                    self.world.interposer.arm_crash(calls);
                }
            }
            "clock_jump" => {
                let ms = [2_000, 30_000, 600_000, 3_600_000][self.world.rng.index(4)];
                self.world.trace(format!("clock +{ms} ms"));
                self.world.advance_ms(ms);
            }
            "clock_back" => {
                // Wall clocks go back (NTP); monotonic time does not.
                let back = self.world.rng.between(1, 5_000) as i64;
                let now = self.world.now_ms();
                self.world.trace(format!("wall clock -{back} ms"));
                self.world.clock.set_wall_ms(now - back);
            }
            other => unreachable!("unknown lifecycle operation {other}"),
        }
    }

    /// Take the engine down — cleanly or by power loss — and bring it back, verifying.
    pub fn restart(&mut self, clean: bool) {
        let world = &mut self.world;
        let mut restart = Restart { clean_close: false, power_lost: !clean || world.crashed() };
        if !world.crashed() {
            if clean {
                world.settle();
            }
            for feature in &mut self.features {
                let clean_close = clean && !self.world.crashed();
                feature.before_shutdown(&mut self.world, clean_close);
            }
        }
        let world = &mut self.world;
        let engine = world.engine.take().expect("the engine is running");
        if clean && !world.crashed() {
            world.trace("clean close");
            let closed = engine.close();
            if world.crashed() {
                restart.power_lost = true;
            } else {
                if let Err(err) = &closed {
                    let faulty = !world.faults.targets.is_empty() || world.faults.capacity_limited;
                    assert!(faulty, "close failed without any fault injected: {err}");
                    world.trace(format!("close failed (faults injected): {err}"));
                }
                restart.clean_close = true;
                world.count("clean restarts", 1);
            }
        }
        if !restart.clean_close && !world.crashed() {
            let report = world.disk.crash();
            world.trace(format!("power loss: {report:?}"));
        }
        drop(engine);
        if restart.power_lost || world.crashed() {
            restart.power_lost = true;
            world.count("crashes", 1);
        }
        world.interposer.disarm();
        world.interposer.clear_crashed();
        for feature in &mut self.features {
            feature.on_shutdown(&mut self.world, restart);
        }
        let world = &mut self.world;
        if world.scenario.vary_config_on_restart && world.rng.below(3) == 0 {
            world.settings = EngineSettings {
                shards: world.rng.between(1, 4) as usize,
                preparation: [
                    SegmentPreparation::Grow,
                    SegmentPreparation::Fallocate,
                    SegmentPreparation::ZeroFill,
                ][world.rng.index(3)],
                direct_io: world.rng.coin(),
            };
            world.trace(format!("new settings {:?}", world.settings));
        }
        let crashed_in_recovery = self.open(true);
        restart.power_lost |= crashed_in_recovery;
        for feature in &mut self.features {
            feature.after_restart(&mut self.world, restart);
        }
    }

    /// Open the engine, possibly with a power loss during recovery (`may_crash`), possibly
    /// first failing on faults still armed. Returns true if a power loss hit recovery.
    fn open(&mut self, may_crash: bool) -> bool {
        let world = &mut self.world;
        let mut crashed = false;
        // Faults of the last incarnation: sometimes left armed once, to see open fail cleanly.
        let mut keep_faults = may_crash
            && (!world.faults.targets.is_empty() || world.faults.capacity_limited)
            && world.rng.below(4) == 0;
        if !keep_faults {
            world.disk.clear_faults();
            world.disk.set_capacity_bytes(None);
        }
        for attempt in 0.. {
            assert!(attempt < 20, "the engine did not open after 20 attempts");
            if may_crash && world.rng.below(5) == 0 {
                let calls = world.rng.between(1, 300);
                world.trace(format!("power loss armed in {calls} storage calls, during recovery"));
                world.interposer.arm_crash(calls);
            }
            match Engine::open(DATA_DIR, world.config()) {
                Ok(engine) => {
                    world.interposer.disarm();
                    if world.crashed() {
                        // Fired after the open returned (a maintenance round): treat it as a
                        // power loss during recovery.
                        drop(engine);
                        world.interposer.clear_crashed();
                        crashed = true;
                        world.count("crashes during recovery", 1);
                        continue;
                    }
                    world.engine = Some(engine);
                    break;
                }
                Err(err) if world.crashed() => {
                    world.trace(format!("power loss during recovery: {err}"));
                    world.interposer.clear_crashed();
                    crashed = true;
                    world.count("crashes during recovery", 1);
                }
                Err(err) if keep_faults => {
                    world.trace(format!("open failed with faults armed: {err}"));
                    world.count("opens failed on faults", 1);
                    assert!(
                        matches!(
                            err,
                            tidelog_core::Error::Io { .. } | tidelog_core::Error::NoSpace { .. }
                        ),
                        "open with faults armed failed with an untyped error: {err:?}"
                    );
                    world.interposer.disarm();
                    world.disk.clear_faults();
                    world.disk.set_capacity_bytes(None);
                    keep_faults = false;
                }
                Err(err) => panic!("Engine::open failed: {err}"),
            }
        }
        world.disk.clear_faults();
        world.disk.set_capacity_bytes(None);
        world.faults.targets.clear();
        world.faults.capacity_limited = false;
        world.incarnation += 1;
        world.trace(format!("engine open ({:?})", world.settings));
        crashed
    }

    fn finish(&mut self) -> SeedReport {
        // Settle everything, close cleanly and check that every acknowledgement is there;
        // then lose power on the quiet engine and check again.
        self.world.interposer.disarm();
        self.world.interposer.set_latency(Latency::default());
        self.restart(true);
        self.restart(false);
        let engine = self.world.engine.take().expect("the engine is running");
        engine.close().expect("the final close succeeds");
        drop(engine);
        let stats = self.world.disk.stats();
        let interposer = self.world.interposer.stats();
        let counters = &mut self.world.counters;
        counters.add("seeds", 1);
        counters.add("storage calls", interposer.calls);
        counters.add("completions held back (latency)", interposer.held);
        counters.add("submissions deferred (latency)", interposer.deferred);
        counters.add("fault: bit flip", stats.bit_flips);
        counters.add("fault: cancelled link", stats.cancelled);
        for kind in OpKind::ALL {
            for (fault, label) in [
                (FaultKind::Io, "EIO"),
                (FaultKind::NoSpace, "ENOSPC"),
                (FaultKind::Short, "short"),
            ] {
                let n = stats.faults(kind, fault);
                if n > 0 {
                    counters.add(&format!("fault: {label} on {kind}"), n);
                }
            }
        }
        let mut image: Vec<(PathBuf, Vec<u8>)> = self
            .world
            .disk
            .paths()
            .into_iter()
            .filter_map(|p| self.world.disk.read(&p).ok().map(|bytes| (p, bytes)))
            .collect();
        image.sort();
        SeedReport { counters: self.world.counters.clone(), image }
    }
}

/// Run one seed with the default features; on failure print the seed, the replay command
/// and the trace, then re-raise the panic.
pub fn run_seed(seed: u64) -> SeedReport {
    let mut simulation = Simulation::new(seed, Simulation::default_features());
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| simulation.run()));
    match outcome {
        Ok(report) => report,
        Err(panic) => {
            eprintln!("---- simulation trace of seed {seed} (last {TRACE_LINES} lines) ----");
            for line in simulation.trace_tail() {
                eprintln!("{line}");
            }
            eprintln!(
                "simulation failed for seed {seed}; replay with:\n  \
                 TIDELOG_SIM_SEED={seed} cargo test -p tidelog-core --test simulation -- --nocapture"
            );
            std::panic::resume_unwind(panic);
        }
    }
}
