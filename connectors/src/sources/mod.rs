//! Source connectors, one folder each.

pub mod file;
pub mod generator;
pub mod http;
pub mod stdin;

/// The values of `items` as text (a bad item as `bad: <error>`), for the sources' tests.
#[cfg(test)]
pub(crate) fn texts(items: &[crate::source::SourceItem]) -> Vec<String> {
    use crate::source::SourceItem;
    items
        .iter()
        .map(|i| match i {
            SourceItem::Record(r) => String::from_utf8(r.value.to_vec()).unwrap(),
            SourceItem::Bad { error, .. } => format!("bad: {error}"),
        })
        .collect()
}
