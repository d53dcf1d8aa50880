//! Markov-chain browsing: a visit as a walk over page types (home, category, product, search,
//! cart, checkout) with fixed transition odds, instead of the scripted funnel. Visits are
//! longer-tailed and revisit pages, as real ones do.

use rand::Rng;
use rand::rngs::StdRng;

use super::session::SessionOptions;
use super::site::Site;
use crate::event::EventKind;

/// Longest walk, steps.
const MAX_STEPS: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Page {
    Home,
    Category(usize),
    Product(usize),
    Search(usize),
    Cart,
    Checkout,
}

/// Appends a Markov walk starting at `landing` to `steps`.
pub(crate) fn markov_steps(
    rng: &mut StdRng,
    steps: &mut Vec<(EventKind, String)>,
    landing: String,
    category: usize,
    registered: bool,
    options: &SessionOptions,
    site: &Site,
) {
    let (cart_odds, purchase_odds) = options.funnel_odds();
    // The funnel's cart odds are per session; per product view they are lower.
    let add = cart_odds * 0.3;
    let n = site.category_count();
    let mut page = if landing == "/" {
        Page::Home
    } else {
        Page::Category(category)
    };
    steps.push((EventKind::PageView, landing));
    if registered && rng.random_bool(0.25) {
        steps.push((EventKind::Login, "/login".to_owned()));
    }
    let mut cart_items = 0;
    while steps.len() < MAX_STEPS {
        let u: f64 = rng.random_range(0.0..1.0);
        page = match page {
            Page::Home if u < 0.55 => Page::Category(rng.random_range(0..n)),
            Page::Home if u < 0.7 => Page::Search(rng.random_range(0..n)),
            Page::Home if u < 0.8 => Page::Product(rng.random_range(0..n)),
            Page::Home => break,
            Page::Category(c) if u < 0.62 => Page::Product(c),
            Page::Category(_) if u < 0.72 => Page::Category(rng.random_range(0..n)),
            Page::Category(_) if u < 0.77 => Page::Home,
            Page::Category(_) => break,
            Page::Search(c) if u < 0.6 => Page::Product(c),
            Page::Search(c) if u < 0.7 => Page::Category(c),
            Page::Search(_) => break,
            Page::Product(c) if u < add => {
                cart_items += 1;
                let last = steps
                    .iter()
                    .rev()
                    .find(|(k, _)| *k == EventKind::PageView)
                    .map_or_else(|| "/".to_owned(), |(_, p)| p.clone());
                steps.push((EventKind::AddToCart, last));
                if rng.random_bool(0.6) {
                    Page::Cart
                } else {
                    Page::Product(c)
                }
            }
            Page::Product(c) if u < add + 0.35 => Page::Product(c),
            Page::Product(c) if u < add + 0.5 => Page::Category(c),
            Page::Product(c) if u < add + 0.62 => {
                let pv = steps
                    .iter()
                    .rev()
                    .find(|(k, _)| *k == EventKind::PageView)
                    .map_or_else(|| "/".to_owned(), |(_, p)| p.clone());
                steps.push((EventKind::Click, pv));
                Page::Product(c)
            }
            Page::Product(_) if u < add + 0.72 && cart_items > 0 => Page::Cart,
            Page::Product(_) => break,
            Page::Cart if u < 0.06 && cart_items > 0 => {
                cart_items -= 1;
                steps.push((EventKind::RemoveFromCart, "/cart".to_owned()));
                Page::Cart
            }
            Page::Cart if u < 0.62 && cart_items > 0 => Page::Checkout,
            Page::Cart if u < 0.8 => Page::Product(category),
            Page::Cart => break,
            Page::Checkout => {
                steps.push((EventKind::Checkout, "/checkout".to_owned()));
                if rng.random_bool(purchase_odds) {
                    steps.push((EventKind::Purchase, "/order/confirmed".to_owned()));
                }
                break;
            }
        };
        match page {
            Page::Home => steps.push((EventKind::PageView, "/".to_owned())),
            Page::Category(c) => steps.push((EventKind::PageView, site.category_page(c))),
            Page::Product(c) => steps.push((EventKind::PageView, site.human_product(rng, c))),
            Page::Search(c) => steps.push((
                EventKind::Search,
                format!("/search?q={}", site.categories[c]),
            )),
            Page::Cart => steps.push((EventKind::PageView, "/cart".to_owned())),
            // The checkout event is pushed on leaving the state.
            Page::Checkout => {}
        }
    }
    if registered && rng.random_bool(0.1) {
        steps.push((EventKind::Logout, "/logout".to_owned()));
    }
}
