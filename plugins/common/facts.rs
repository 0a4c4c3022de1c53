//! The request facts from `wit-bindgen` types to `levee-policy` types, for
//! every plugin crate generating a world that uses `levee:policy/types`
//! (the retry and routing glue include this file by path). Both are two
//! scalars: nothing here allocates.

use crate::levee::policy::types as wit;
use levee_policy as policy;

pub fn facts(facts: wit::RequestFacts) -> policy::RequestFacts {
    policy::RequestFacts {
        method: method(facts.method),
        idempotent: facts.idempotent,
    }
}

fn method(method: wit::Method) -> policy::Method {
    match method {
        wit::Method::Get => policy::Method::Get,
        wit::Method::Head => policy::Method::Head,
        wit::Method::Post => policy::Method::Post,
        wit::Method::Put => policy::Method::Put,
        wit::Method::Delete => policy::Method::Delete,
        wit::Method::Patch => policy::Method::Patch,
        wit::Method::Options => policy::Method::Options,
        wit::Method::Other => policy::Method::Other,
    }
}
