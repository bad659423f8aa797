//! A condition on one field as the config's keys write it: the plain key
//! and its `not_` form.

/// The plain key (`src`) lists what the value must be one of, the `not_`
/// key (`not_src`) what it must be none of. Both empty: no condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match<T> {
    pub any_of: Vec<T>,
    pub none_of: Vec<T>,
}

impl<T> Default for Match<T> {
    fn default() -> Self {
        Match {
            any_of: Vec::new(),
            none_of: Vec::new(),
        }
    }
}

impl<T> Match<T> {
    pub fn is(v: T) -> Self {
        Match {
            any_of: vec![v],
            none_of: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.any_of.is_empty() && self.none_of.is_empty()
    }
}
