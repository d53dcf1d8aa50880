//! The shop's URL scheme and catalogue: which categories exist, which product pages belong to
//! which category, and how both are spelled in a URL. Detectors must not depend on one
//! spelling, so a world draws one of several (`World::random`).

use rand::Rng;
use rand::rngs::StdRng;

/// Scheme and host of every generated URL.
pub const ORIGIN: &str = "https://shop.example";

/// The categories of the original model, in its order.
const LEGACY_CATEGORIES: [&str; 8] = [
    "shoes", "shirts", "bags", "watches", "toys", "books", "garden", "kitchen",
];

/// Names a drawn world picks its categories from.
const CATEGORY_POOL: [&str; 24] = [
    "shoes",
    "shirts",
    "bags",
    "watches",
    "toys",
    "books",
    "garden",
    "kitchen",
    "jewelry",
    "sports",
    "beauty",
    "music",
    "games",
    "office",
    "pets",
    "tools",
    "baby",
    "outdoor",
    "lighting",
    "audio",
    "cameras",
    "phones",
    "furniture",
    "bedding",
];

/// How category and product pages are spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UrlScheme {
    /// The original model: `/category/<c>` and `/product/<n>`, products not tied to a category
    /// in the URL (for outages, product `n` belongs to category `(n - 1) % categories`).
    Legacy,
    /// `/c/<c>` and `/p/<c>-<n>`.
    Dash,
    /// `/category/<c>` and `/category/<c>/item-<n>`.
    Nested,
    /// `/shop/<c>` and `/shop/<c>/item/<id>`, ids unique across the shop.
    Shop,
    /// `/category/<c>` and `/product/<id>`, ids unique across the shop and grouped by
    /// category in blocks (the category is not in the URL).
    Flat,
}

impl UrlScheme {
    /// The name used in world summaries and docs.
    pub fn as_str(self) -> &'static str {
        match self {
            UrlScheme::Legacy => "legacy",
            UrlScheme::Dash => "/p/<c>-<n>",
            UrlScheme::Nested => "/category/<c>/<product>",
            UrlScheme::Shop => "/shop/<c>/item/<id>",
            UrlScheme::Flat => "/product/<id>",
        }
    }
}

/// Products of the legacy catalogue humans browse (`/product/1..499`); scrapers roam 1..4999.
const LEGACY_HUMAN_PRODUCTS: u32 = 500;
const LEGACY_ALL_PRODUCTS: u32 = 5_000;
/// First product id of the id-based schemes (so ids look like ids, not indexes).
const FIRST_ID: u32 = 1_000;

/// The catalogue and its URLs.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    /// URL spelling.
    pub scheme: UrlScheme,
    /// Category names.
    pub categories: Vec<&'static str>,
    /// Products in each category (ignored by `Legacy`).
    pub per_category: u32,
}

impl Site {
    /// The original model's site.
    pub fn legacy() -> Self {
        Site {
            scheme: UrlScheme::Legacy,
            categories: LEGACY_CATEGORIES.to_vec(),
            per_category: LEGACY_HUMAN_PRODUCTS / LEGACY_CATEGORIES.len() as u32,
        }
    }

    /// A drawn site: scheme, 4–16 categories, 15–300 products each.
    pub fn random(rng: &mut StdRng) -> Self {
        let scheme = [
            UrlScheme::Dash,
            UrlScheme::Nested,
            UrlScheme::Shop,
            UrlScheme::Flat,
        ][rng.random_range(0..4)];
        let mut pool = CATEGORY_POOL.to_vec();
        for i in (1..pool.len()).rev() {
            let j = rng.random_range(0..=i);
            pool.swap(i, j);
        }
        pool.truncate(rng.random_range(4..=16));
        Site {
            scheme,
            categories: pool,
            per_category: rng.random_range(15..=300),
        }
    }

    /// Number of categories.
    pub fn category_count(&self) -> usize {
        self.categories.len()
    }

    /// Path of category `c`'s page.
    pub fn category_page(&self, c: usize) -> String {
        let name = self.categories[c % self.categories.len()];
        match self.scheme {
            UrlScheme::Dash => format!("/c/{name}"),
            UrlScheme::Shop => format!("/shop/{name}"),
            UrlScheme::Legacy | UrlScheme::Nested | UrlScheme::Flat => format!("/category/{name}"),
        }
    }

    /// Path of product `n` (0-based) of category `c`.
    pub fn product_page(&self, c: usize, n: u32) -> String {
        let c = c % self.categories.len();
        let name = self.categories[c];
        let id = FIRST_ID + c as u32 * self.per_category + n;
        match self.scheme {
            UrlScheme::Legacy => format!(
                "/product/{}",
                n * self.categories.len() as u32 + c as u32 + 1
            ),
            UrlScheme::Dash => format!("/p/{name}-{}", n + 1),
            UrlScheme::Nested => format!("/category/{name}/item-{}", n + 1),
            UrlScheme::Shop => format!("/shop/{name}/item/{id}"),
            UrlScheme::Flat => format!("/product/{id}"),
        }
    }

    /// A product page a human browsing category `c` opens. Legacy: any of `/product/1..499`,
    /// whatever the category (one draw, as the original model made it).
    pub fn human_product(&self, rng: &mut StdRng, c: usize) -> String {
        match self.scheme {
            UrlScheme::Legacy => format!("/product/{}", rng.random_range(1..LEGACY_HUMAN_PRODUCTS)),
            _ => {
                // Mostly the category being browsed; sometimes a related one.
                let c = if rng.random_bool(0.85) {
                    c
                } else {
                    rng.random_range(0..self.categories.len())
                };
                // Popularity is skewed: low numbers are the best sellers.
                let u: f64 = rng.random_range(0.0..1.0);
                let n = ((u * u) * f64::from(self.per_category)) as u32;
                self.product_page(c, n.min(self.per_category - 1))
            }
        }
    }

    /// A product page of a random category (injected visits). Legacy: one draw, as before.
    pub fn random_human_product(&self, rng: &mut StdRng) -> String {
        match self.scheme {
            UrlScheme::Legacy => self.human_product(rng, 0),
            _ => {
                let c = rng.random_range(0..self.categories.len());
                self.human_product(rng, c)
            }
        }
    }

    /// Products in the whole catalogue (what a crawler can walk).
    pub fn catalogue_len(&self) -> u32 {
        match self.scheme {
            UrlScheme::Legacy => LEGACY_ALL_PRODUCTS,
            _ => self.per_category * self.categories.len() as u32,
        }
    }

    /// The `i`-th product of the catalogue (wrapping).
    pub fn catalogue_product(&self, i: u32) -> String {
        match self.scheme {
            UrlScheme::Legacy => format!("/product/{}", i % LEGACY_ALL_PRODUCTS + 1),
            _ => {
                let i = i % self.catalogue_len();
                self.product_page((i / self.per_category) as usize, i % self.per_category)
            }
        }
    }

    /// Any product, uniformly (scrapers). Legacy: one draw of 1..4999.
    pub fn any_product(&self, rng: &mut StdRng) -> String {
        match self.scheme {
            UrlScheme::Legacy => format!("/product/{}", rng.random_range(1..LEGACY_ALL_PRODUCTS)),
            _ => self.catalogue_product(rng.random_range(0..self.catalogue_len())),
        }
    }

    /// The category of a product page path, None for any other page.
    pub fn category_of(&self, path: &str) -> Option<usize> {
        let by_name = |name: &str| self.categories.iter().position(|c| *c == name);
        let by_id = |id: &str| {
            let id: u32 = id.parse().ok()?;
            let i = id.checked_sub(FIRST_ID)?;
            (i < self.catalogue_len()).then_some((i / self.per_category) as usize)
        };
        match self.scheme {
            UrlScheme::Legacy => {
                let n: u32 = path.strip_prefix("/product/")?.parse().ok()?;
                Some((n.checked_sub(1)? as usize) % self.categories.len())
            }
            UrlScheme::Dash => {
                let rest = path.strip_prefix("/p/")?;
                by_name(rest.rsplit_once('-')?.0)
            }
            UrlScheme::Nested => {
                let (name, item) = path.strip_prefix("/category/")?.split_once('/')?;
                item.starts_with("item-").then(|| by_name(name))?
            }
            UrlScheme::Shop => {
                let (name, item) = path.strip_prefix("/shop/")?.split_once('/')?;
                item.strip_prefix("item/")?;
                by_name(name)
            }
            UrlScheme::Flat => by_id(path.strip_prefix("/product/")?),
        }
    }

    /// Every product page of category `c` a human may open (the entities of its outage).
    pub fn products_of(&self, c: usize) -> Vec<String> {
        match self.scheme {
            UrlScheme::Legacy => (1..LEGACY_HUMAN_PRODUCTS)
                .filter(|n| ((n - 1) as usize) % self.categories.len() == c)
                .map(|n| format!("/product/{n}"))
                .collect(),
            _ => (0..self.per_category)
                .map(|n| self.product_page(c, n))
                .collect(),
        }
    }

    /// Landing pages and their share of session landings: `/` takes half, the category pages
    /// share the rest evenly (both navigation styles land this way).
    pub fn landing_pages(&self) -> Vec<(String, f64)> {
        let share = 0.5 / self.categories.len() as f64;
        std::iter::once(("/".to_owned(), 0.5))
            .chain((0..self.categories.len()).map(|c| (self.category_page(c), share)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn every_scheme_reads_back_the_category_of_its_product_pages() {
        let mut rng = StdRng::seed_from_u64(3);
        for scheme in [
            UrlScheme::Legacy,
            UrlScheme::Dash,
            UrlScheme::Nested,
            UrlScheme::Shop,
            UrlScheme::Flat,
        ] {
            let site = Site {
                scheme,
                ..Site::random(&mut rng)
            };
            let site = if scheme == UrlScheme::Legacy {
                Site::legacy()
            } else {
                site
            };
            for c in 0..site.category_count() {
                let pages = site.products_of(c);
                assert!(!pages.is_empty());
                for p in &pages {
                    assert_eq!(site.category_of(p), Some(c), "{scheme:?} {p}");
                }
                assert_eq!(site.category_of(&site.category_page(c)), None);
                let p = site.human_product(&mut rng, c);
                assert!(site.category_of(&p).is_some(), "{p}");
            }
            assert_eq!(site.category_of("/cart"), None);
            assert_eq!(site.category_of("/"), None);
        }
    }
}
