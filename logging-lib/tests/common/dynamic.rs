//! Spans and events with field names known only at run time, through `tracing`'s own
//! dynamic callsite machinery (for property tests).
use tracing::callsite::{Callsite, Identifier};
use tracing::field::{FieldSet, Value};
use tracing::metadata::{Kind, Level, Metadata};
use tracing::subscriber::Interest;
use tracing::{Event, Span, info};

struct Site(std::sync::OnceLock<&'static Metadata<'static>>);
impl Callsite for Site {
    fn set_interest(&self, _: Interest) {}
    fn metadata(&self) -> &Metadata<'_> {
        self.0.get().unwrap()
    }
}

pub fn site(name: &'static str, fields: &[&'static str], kind: Kind) -> &'static Metadata<'static> {
    let site: &'static Site = Box::leak(Box::new(Site(std::sync::OnceLock::new())));
    let names: &'static [&'static str] = Box::leak(fields.to_vec().into_boxed_slice());
    let meta = Box::leak(Box::new(Metadata::new(
        name,
        "dynamic",
        Level::INFO,
        None,
        None,
        None,
        FieldSet::new(names, Identifier(site)),
        kind,
    )));
    site.0.set(meta).ok();
    tracing::callsite::register(site);
    meta
}

pub fn emit(
    message: &str,
    span_fields: &[(&'static str, String)],
    event_fields: &[(&'static str, i64)],
) {
    let names: Vec<&'static str> = span_fields.iter().map(|(k, _)| *k).collect();
    let meta = site("prop_span", &names, Kind::SPAN);
    let values: Vec<(tracing::field::Field, Option<&dyn Value>)> = meta
        .fields()
        .iter()
        .zip(span_fields)
        .map(|(f, (_, v))| (f, Some(v as &dyn Value)))
        .collect();
    let span = with_values(meta, &values, |vs| Span::new(meta, vs));
    let _e = span.enter();

    let mut names: Vec<&'static str> = vec!["message"];
    names.extend(event_fields.iter().map(|(k, _)| *k));
    let meta = site("prop_event", &names, Kind::EVENT);
    let msg = format_args!("{message}");
    let mut values: Vec<(tracing::field::Field, Option<&dyn Value>)> = Vec::new();
    let mut fields = meta.fields().iter();
    values.push((fields.next().unwrap(), Some(&msg as &dyn Value)));
    for (f, (_, v)) in fields.zip(event_fields) {
        values.push((f, Some(v as &dyn Value)));
    }
    with_values(meta, &values, |vs| Event::dispatch(meta, vs));
}

/// `ValueSet` wants a fixed-size array; build one of the right length.
pub fn with_values<R>(
    meta: &'static Metadata<'static>,
    values: &[(tracing::field::Field, Option<&dyn Value>)],
    f: impl FnOnce(&tracing::field::ValueSet<'_>) -> R,
) -> R {
    macro_rules! arms {
        ($($n:literal),*) => {
            match values.len() {
                $($n => {
                    let arr: [(&tracing::field::Field, Option<&dyn Value>); $n] =
                        std::array::from_fn(|i| (&values[i].0, values[i].1));
                    f(&meta.fields().value_set(&arr))
                })*
                n => unreachable!("{n} fields"),
            }
        };
    }
    arms!(0, 1, 2, 3, 4, 5, 6, 7)
}

/// A span named `name` with `fields`, entered, with one event `message` inside.
pub fn span_with_event(name: &'static str, fields: &[(&'static str, String)], message: &str) {
    let names: Vec<&'static str> = fields.iter().map(|(k, _)| *k).collect();
    let meta = site(name, &names, Kind::SPAN);
    let values: Vec<(tracing::field::Field, Option<&dyn Value>)> = meta
        .fields()
        .iter()
        .zip(fields)
        .map(|(f, (_, v))| (f, Some(v as &dyn Value)))
        .collect();
    let span = with_values(meta, &values, |vs| Span::new(meta, vs));
    let _e = span.enter();
    info!("{message}");
}
