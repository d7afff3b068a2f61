//! Source connectors, one folder each.
