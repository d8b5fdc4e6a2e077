//! Building exposition families by hand for the scrape-time collectors.
//!
//! Handle-backed families go through prometheus' own metric types; the collectors that sample a
//! value at scrape time (stats closures, `/proc`, the tokio runtime) build their families here.

use prometheus::core::Desc;
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

use crate::families::{Family, FamilyKind};

/// The descriptor of a catalogue family, for `Collector::desc`.
pub(crate) fn desc(family: &Family) -> prometheus::Result<Desc> {
    Desc::new(
        family.name.to_owned(),
        family.help.to_owned(),
        family.labels.iter().map(|l| (*l).to_owned()).collect(),
        Default::default(),
    )
}

/// A family holding `samples`, each a set of label values (in the family's label order) and a
/// value. Histogram families are not built here.
pub(crate) fn family<'a, L: AsRef<[&'a str]>>(
    family: &Family,
    samples: impl IntoIterator<Item = (L, f64)>,
) -> MetricFamily {
    let mut mf = MetricFamily::default();
    mf.set_name(family.name.to_owned());
    mf.set_help(family.help.to_owned());
    let counter = family.kind == FamilyKind::Counter;
    mf.set_field_type(if counter {
        MetricType::COUNTER
    } else {
        MetricType::GAUGE
    });
    let metrics = samples
        .into_iter()
        .map(|(values, value)| {
            let mut m = Metric::default();
            m.set_label(
                family
                    .labels
                    .iter()
                    .zip(values.as_ref())
                    .map(|(name, value)| {
                        let mut pair = LabelPair::default();
                        pair.set_name((*name).to_owned());
                        pair.set_value((*value).to_owned());
                        pair
                    })
                    .collect(),
            );
            if counter {
                let mut c = Counter::default();
                c.set_value(value);
                m.set_counter(c);
            } else {
                let mut g = Gauge::default();
                g.set_value(value);
                m.set_gauge(g);
            }
            m
        })
        .collect();
    mf.set_metric(metrics);
    mf
}

/// A family with a single unlabelled sample.
pub(crate) fn single(family_: &Family, value: f64) -> MetricFamily {
    family(family_, [([] as [&str; 0], value)])
}
