//! The worker threads: each runs a [`Processor`] over its share of the tasks, and a
//! dispatcher thread hands each source message to the worker owning its task. A task (one
//! partition) lives on one worker for as long as it is assigned, so its events keep their
//! order; a new task goes to the worker with the fewest. Plugin changes go to every worker
//! (each has its own instances), an end of input too.
//!
//! Every worker writes to the one sink queue, and its checkpoint barriers cover its own
//! tasks only: a barrier follows that worker's work in the queue, so it is stored after all
//! of it, whatever the other workers send in between.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::mpsc;

use super::processor::{Ending, Processor};
use super::sink_stage::SinkWork;
use super::tasks;
use crate::metrics::Metrics;
use crate::plugin::{Control, PluginStatus};
use crate::source::{SourceMsg, TopicPartition};

/// Running workers and their dispatcher.
pub struct Workers {
    dispatcher: JoinHandle<()>,
    workers: Vec<JoinHandle<(Ending, Vec<PluginStatus>)>>,
}

/// A worker thread could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot start a processing thread: {0}")]
pub struct SpawnError(#[from] std::io::Error);

impl Workers {
    /// Starts one thread per processor (the first is the *primary*: it alone counts and
    /// reports plugin loads) and the dispatcher reading `input` and `control`. Each worker's
    /// queue holds `queue` messages, like every queue between stages.
    pub fn start(
        processors: Vec<Processor>,
        input: mpsc::Receiver<SourceMsg>,
        control: mpsc::Receiver<Control>,
        output: mpsc::Sender<SinkWork>,
        queue: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Workers, SpawnError> {
        let mut senders = Vec::new();
        let mut workers = Vec::new();
        for (i, processor) in processors.into_iter().enumerate() {
            let (input_tx, input_rx) = mpsc::channel(queue);
            let (control_tx, control_rx) = mpsc::channel(4);
            let output = output.clone();
            let name = if i == 0 {
                "processor".to_owned()
            } else {
                format!("processor-{i}")
            };
            workers.push(
                std::thread::Builder::new()
                    .name(name)
                    .spawn(move || processor.run(input_rx, control_rx, output))?,
            );
            senders.push((input_tx, control_tx));
        }
        drop(output);
        let dispatcher = std::thread::Builder::new()
            .name("dispatcher".into())
            .spawn(move || Dispatcher::new(senders, metrics).run(input, control))?;
        Ok(Workers {
            dispatcher,
            workers,
        })
    }

    /// Waits for every thread: how the run ended (exhausted only if every worker was) and the
    /// counters of every plugin, summed over the workers.
    pub fn join(self) -> Result<(Ending, Vec<PluginStatus>), String> {
        if self.dispatcher.join().is_err() {
            tracing::error!("the dispatcher thread panicked");
        }
        let mut ending = Ending::Exhausted;
        let mut all = std::collections::BTreeMap::new();
        for worker in self.workers {
            let (e, statuses) = worker
                .join()
                .map_err(|_| "a processor thread panicked".to_owned())?;
            if e == Ending::Stopped {
                ending = Ending::Stopped;
            }
            tasks::merge_status(&mut all, statuses);
        }
        Ok((ending, all.into_values().collect()))
    }
}

type Senders = (mpsc::Sender<SourceMsg>, mpsc::Sender<Control>);

/// Which worker runs which task.
struct Dispatcher {
    workers: Vec<Senders>,
    owner: HashMap<TopicPartition, usize>,
    load: Vec<usize>,
    metrics: Arc<Metrics>,
}

impl Dispatcher {
    fn new(workers: Vec<Senders>, metrics: Arc<Metrics>) -> Self {
        let load = vec![0; workers.len()];
        Dispatcher {
            workers,
            owner: HashMap::new(),
            load,
            metrics,
        }
    }

    /// Until the input closes or a worker is gone; then every worker's queue closes.
    fn run(mut self, mut input: mpsc::Receiver<SourceMsg>, mut control: mpsc::Receiver<Control>) {
        let rt = match tokio::runtime::Builder::new_current_thread().build() {
            Ok(rt) => rt,
            Err(error) => {
                tracing::error!(%error, "dispatcher cannot start its receive loop");
                return;
            }
        };
        let mut control_open = true;
        loop {
            // Plugin changes first, so a swap is not queued behind a backlog of input.
            let next = rt.block_on(async {
                tokio::select! {
                    biased;
                    c = control.recv(), if control_open => Wait::Control(c),
                    m = input.recv() => Wait::Input(m),
                }
            });
            let sent = match next {
                Wait::Input(Some(msg)) => self.input(msg),
                Wait::Input(None) => return,
                Wait::Control(Some(c)) => self.control(c),
                Wait::Control(None) => {
                    control_open = false;
                    true
                }
            };
            if !sent {
                tracing::error!("a processing thread is gone; the dispatcher stops");
                return;
            }
        }
    }

    /// Hands a source message on; false when a worker is gone.
    fn input(&mut self, msg: SourceMsg) -> bool {
        match msg {
            SourceMsg::Batch { events, dead, from } => {
                let worker = match &from {
                    Some(origin) => self.owner_of(&origin.task()),
                    None => 0,
                };
                self.send(worker, SourceMsg::Batch { events, dead, from })
            }
            SourceMsg::Assign { at, restored } => {
                let worker = self.owner_of(&at);
                self.send(worker, SourceMsg::Assign { at, restored })
            }
            SourceMsg::Revoke {
                partitions,
                checkpoint,
                done,
            } => {
                let mut by_worker: Vec<Vec<TopicPartition>> = vec![Vec::new(); self.workers.len()];
                for partition in partitions {
                    if let Some(worker) = self.owner.remove(&partition) {
                        self.load[worker] -= 1;
                        by_worker[worker].push(partition);
                    }
                }
                // The revoke is done once every worker's part is settled: each holds a clone
                // of `done`, and the source waits until the last one is dropped.
                by_worker
                    .into_iter()
                    .enumerate()
                    .filter(|(_, partitions)| !partitions.is_empty())
                    .all(|(worker, partitions)| {
                        self.send(
                            worker,
                            SourceMsg::Revoke {
                                partitions,
                                checkpoint,
                                done: done.clone(),
                            },
                        )
                    })
            }
            SourceMsg::Exhausted => {
                (0..self.workers.len()).all(|w| self.send(w, SourceMsg::Exhausted))
            }
        }
    }

    /// The worker of `task`; a new task goes to the least loaded one.
    fn owner_of(&mut self, task: &TopicPartition) -> usize {
        match self.owner.entry(task.clone()) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                let worker = (0..self.load.len())
                    .min_by_key(|&w| self.load[w])
                    .unwrap_or(0);
                self.load[worker] += 1;
                *e.insert(worker)
            }
        }
    }

    fn send(&self, worker: usize, msg: SourceMsg) -> bool {
        self.workers
            .get(worker)
            .is_some_and(|(tx, _)| tx.blocking_send(msg).is_ok())
    }

    /// A plugin change for every worker: the first gets the prepared instance, each other one
    /// a fresh instance of the same module and settings (instantiated here, off the async
    /// workers).
    fn control(&self, control: Control) -> bool {
        let copies: Vec<Control> = match &control {
            Control::Install(prepared) => (1..self.workers.len())
                .filter_map(|_| match prepared.again() {
                    Ok(copy) => Some(Control::Install(Box::new(copy))),
                    Err(error) => {
                        Metrics::add(&self.metrics.plugin_rejections, 1);
                        tracing::error!(file = %prepared.path.display(), %error,
                            "plugin could not start a second instance; it is not installed on every worker");
                        None
                    }
                })
                .collect(),
            Control::Remove(path) => (1..self.workers.len())
                .map(|_| Control::Remove(path.clone()))
                .collect(),
        };
        std::iter::once(control)
            .chain(copies)
            .enumerate()
            .all(|(worker, c)| {
                self.workers
                    .get(worker)
                    .is_some_and(|(_, tx)| tx.blocking_send(c).is_ok())
            })
    }
}

enum Wait {
    Input(Option<SourceMsg>),
    Control(Option<Control>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::BatchOrigin;

    fn batch(topic: &str, partition: i32) -> SourceMsg {
        SourceMsg::Batch {
            events: Vec::new(),
            dead: Vec::new(),
            from: Some(BatchOrigin {
                topic: topic.into(),
                partition,
                offsets: Vec::new(),
                next_offset: 0,
                routed: Vec::new(),
                markers: Vec::new(),
            }),
        }
    }

    fn partition_of(msg: &SourceMsg) -> TopicPartition {
        match msg {
            SourceMsg::Batch { from: Some(o), .. } => o.task(),
            SourceMsg::Assign { at, .. } => at.clone(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_task_stays_on_its_worker_new_ones_go_to_the_least_loaded_and_a_revoke_waits_for_every_part()
     {
        let mut inputs = Vec::new();
        let mut senders = Vec::new();
        for _ in 0..2 {
            let (tx, rx) = mpsc::channel(16);
            let (ctx, _crx) = mpsc::channel(1);
            inputs.push(rx);
            senders.push((tx, ctx));
        }
        let mut dispatcher = Dispatcher::new(senders, Arc::new(Metrics::default()));
        for (topic, partition) in [("in", 0), ("in", 1), ("by-ip", 0), ("in", 0), ("in", 1)] {
            assert!(dispatcher.input(batch(topic, partition)));
        }
        let got: Vec<Vec<TopicPartition>> = inputs
            .iter_mut()
            .map(|rx| {
                std::iter::from_fn(|| rx.try_recv().ok())
                    .map(|m| partition_of(&m))
                    .collect()
            })
            .collect();
        let tp = |topic: &str, partition| TopicPartition::new(&topic.into(), partition);
        assert_eq!(
            got,
            vec![
                vec![tp("in", 0), tp("by-ip", 0), tp("in", 0)],
                vec![tp("in", 1), tp("in", 1)],
            ],
            "each partition keeps its worker; the third task went to the emptier one"
        );

        let (done, waiting) = std::sync::mpsc::sync_channel::<()>(1);
        assert!(dispatcher.input(SourceMsg::Revoke {
            partitions: vec![tp("in", 0), tp("in", 1), tp("by-ip", 7)],
            checkpoint: true,
            done,
        }));
        let mut parts: Vec<SourceMsg> = inputs
            .iter_mut()
            .filter_map(|rx| rx.try_recv().ok())
            .collect();
        assert_eq!(parts.len(), 2, "one revoke per worker owning a partition");
        assert_eq!(
            waiting.try_recv(),
            Err(std::sync::mpsc::TryRecvError::Empty),
            "not done while a worker holds its part"
        );
        parts.pop();
        assert_eq!(
            waiting.try_recv(),
            Err(std::sync::mpsc::TryRecvError::Empty)
        );
        parts.clear();
        assert_eq!(
            waiting.try_recv(),
            Err(std::sync::mpsc::TryRecvError::Disconnected),
            "done once every part is settled"
        );
        // A revoked partition's next owner may be either worker; the load is back to even.
        assert_eq!(dispatcher.load, vec![1, 0]);
    }
}
