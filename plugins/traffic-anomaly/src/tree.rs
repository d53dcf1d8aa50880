//! The site's tree of series: the site, the url levels, the pages, and how a node finds its
//! parent, ancestors and children.

use super::TrafficAnomaly;
use crate::levels;
use crate::series::{Direction, Finding, Series};

/// Which series a node of the site's tree is. Ordered coarsest first: the site, then levels
/// (a level's name is a prefix of its sub-levels'), then pages.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum NodeId {
    Site,
    Group(String),
    Page(String),
}

/// One series as closed in this bucket: what naming needs.
pub(crate) struct Node {
    pub(crate) id: NodeId,
    pub(crate) parent: Option<NodeId>,
    pub(crate) dir: Option<Direction>,
    pub(crate) ratio: f64,
    pub(crate) count: f64,
    pub(crate) expected: f64,
    pub(crate) alertable: bool,
    pub(crate) finding: Option<Finding>,
}

/// The parent level of a level: `/p/books-*` → `/p/`, `/category/books/` → `/category/`,
/// `/p/` → none (the site).
pub(crate) fn parent_level(level: &str) -> Option<&str> {
    let body = level.strip_suffix('/').unwrap_or(level);
    let cut = body.rfind('/')?;
    (cut > 0).then(|| &level[..=cut])
}

impl TrafficAnomaly {
    /// The nearest tracked level above a page, if any.
    pub(crate) fn page_parent(&self, url: &str) -> Option<NodeId> {
        let levels = match self.levels.get(url) {
            Some(l) => l.clone(),
            None => levels::levels(url),
        };
        levels
            .into_iter()
            .rev()
            .find(|l| self.state.groups.contains_key(l))
            .map(NodeId::Group)
    }

    pub(crate) fn group_parent(&self, level: &str) -> Option<NodeId> {
        let mut at = parent_level(level);
        while let Some(p) = at {
            if self.state.groups.contains_key(p) {
                return Some(NodeId::Group(p.to_owned()));
            }
            at = parent_level(p);
        }
        None
    }

    pub(crate) fn series(&self, id: &NodeId) -> Option<&Series> {
        match id {
            NodeId::Site => self.state.site.as_ref(),
            NodeId::Group(k) => self.state.groups.get(k),
            NodeId::Page(u) => self.state.pages.get(u),
        }
    }

    pub(crate) fn series_mut(&mut self, id: &NodeId) -> Option<&mut Series> {
        match id {
            NodeId::Site => self.state.site.as_mut(),
            NodeId::Group(k) => self.state.groups.get_mut(k),
            NodeId::Page(u) => self.state.pages.get_mut(u),
        }
    }

    /// The ancestors of a node, nearest first, ending with the site.
    pub(crate) fn ancestors_of(&self, id: &NodeId) -> Vec<NodeId> {
        let mut chain = Vec::new();
        let mut at = match id {
            NodeId::Site => return chain,
            NodeId::Group(k) => self.group_parent(k),
            NodeId::Page(u) => self.page_parent(u),
        };
        while let Some(NodeId::Group(k)) = at {
            at = self.group_parent(&k);
            chain.push(NodeId::Group(k));
        }
        chain.push(NodeId::Site);
        chain
    }

    /// The children of a node in the site's tree.
    pub(crate) fn children_of(&self, id: &NodeId) -> Vec<NodeId> {
        if matches!(id, NodeId::Page(_)) {
            return Vec::new();
        }
        let parent = |p: Option<NodeId>| match p {
            None => *id == NodeId::Site,
            Some(p) => p == *id,
        };
        let mut out: Vec<NodeId> = self
            .state
            .groups
            .keys()
            .filter(|k| parent(self.group_parent(k)))
            .map(|k| NodeId::Group(k.clone()))
            .collect();
        out.extend(
            self.state
                .pages
                .keys()
                .filter(|u| parent(self.page_parent(u)))
                .map(|u| NodeId::Page(u.clone())),
        );
        out
    }
}
