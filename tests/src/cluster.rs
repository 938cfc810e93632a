//! A RabbitMQ cluster of private nodes on this machine, for the tests of SPEC §12: each
//! node a [`PrivateRabbit`] (its own node name `jf<id>-n<i>@localhost`, AMQP and
//! distribution ports, data directory; the Erlang cookie of the `rabbitmq` user, shared by
//! all), joined with `rabbitmqctl join_cluster`. Nodes can be SIGKILLed, stopped and
//! started again; quorum queues are found by their leader.

use crate::private::{short_id, PrivateRabbit};
use std::time::{Duration, Instant};

/// A cluster of private RabbitMQ nodes, stopped and removed when dropped.
#[derive(Debug)]
pub struct PrivateCluster {
    nodes: Vec<PrivateRabbit>,
}

impl PrivateCluster {
    /// Boots `size` nodes at once, joins every other node to the first, and waits until all
    /// of them run as one cluster.
    pub fn start(size: usize) -> PrivateCluster {
        assert!(size >= 1, "a cluster has nodes");
        let id = short_id();
        let nodes: Vec<PrivateRabbit> = (1..=size)
            .map(|i| PrivateRabbit::prepare(&format!("{id}-n{i}"), "", Vec::new(), None))
            .collect();
        for node in &nodes {
            node.launch_detached();
        }
        for node in &nodes {
            node.wait_until_listening();
        }
        let seed = nodes[0].node().to_string();
        for node in &nodes[1..] {
            node.ctl(&["stop_app"]);
            node.ctl(&["join_cluster", &seed]);
            node.ctl(&["start_app"]);
        }
        let cluster = PrivateCluster { nodes };
        cluster.wait_until_running(Duration::from_secs(60));
        cluster
    }

    /// Node `index` (0-based).
    pub fn node(&self, index: usize) -> &PrivateRabbit {
        &self.nodes[index]
    }

    /// How many nodes the cluster has.
    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    /// Every node's AMQP URL, comma-separated: an `amqp_url` that names the whole cluster.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(PrivateRabbit::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The node to ask about the cluster: the first that runs the `rabbit` app.
    fn answering(&self) -> &PrivateRabbit {
        self.nodes
            .iter()
            .find(|node| node.is_running())
            .expect("a node of the cluster runs")
    }

    /// How many nodes run the `rabbit` app, as a running node sees the cluster.
    pub fn running_nodes(&self) -> usize {
        let printed = self
            .answering()
            .ctl_output(&["eval", "length(rabbit_nodes:all_running())."]);
        printed.trim().parse().expect("a count of nodes")
    }

    /// Waits until every node runs as part of the cluster; panics after `timeout`.
    pub fn wait_until_running(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.running_nodes() < self.nodes.len() {
            assert!(
                Instant::now() < deadline,
                "the cluster is not whole after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The index of the node that leads the quorum queue `queue` (of vhost `/`), as
    /// `rabbitmqctl list_queues name leader` shows it; `None` while it has none.
    pub fn leader(&self, queue: &str) -> Option<usize> {
        let printed = self.answering().ctl_output(&["list_queues", "name", "leader"]);
        let leader = printed.lines().find_map(|line| {
            let (name, leader) = line.split_once('\t')?;
            (name == queue).then(|| leader.trim().to_string())
        })?;
        self.nodes.iter().position(|node| node.node() == leader)
    }

    /// Waits until the quorum queue `queue` has a leader and returns its node's index.
    pub fn wait_for_leader(&self, queue: &str, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(leader) = self.leader(queue) {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "{queue} has no leader after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// How many client connections node `index` holds (`rabbitmqctl list_connections`).
    pub fn connections(&self, index: usize) -> usize {
        self.nodes[index]
            .ctl_output(&["list_connections", "--no-table-headers", "name"])
            .lines()
            .filter(|line| !line.trim().is_empty())
            .count()
    }

    /// SIGKILLs node `index`, waits `down_for`, starts it again and waits until it is back in
    /// the cluster.
    pub fn kill_and_restart(&self, index: usize, down_for: Duration) {
        self.nodes[index].kill();
        std::thread::sleep(down_for);
        self.start_again(index);
    }

    /// Stops node `index` cleanly (`rabbitmqctl stop`), keeps it down for `down_for`, starts
    /// it again and waits until it is back in the cluster.
    pub fn stop_for(&self, index: usize, down_for: Duration) {
        self.nodes[index].stop();
        std::thread::sleep(down_for);
        self.start_again(index);
    }

    /// Starts node `index` again (after [`PrivateRabbit::kill`] or [`PrivateRabbit::stop`])
    /// and waits until it is back in the cluster.
    pub fn start_again(&self, index: usize) {
        self.nodes[index].launch();
        self.wait_until_running(Duration::from_secs(60));
    }
}
