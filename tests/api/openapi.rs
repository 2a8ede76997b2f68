//! `/api/v1/openapi.json` against DESIGN.md: every route of §4's JSON API
//! (and the claim, §10's forward-auth routes, `/healthz`) with its method, and
//! every field of every request and response body, enums included. Then the
//! real answers of a whole review are checked against the document, so
//! neither the document nor the code can drift from the other.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::helpers::*;

/// Every operation the document must describe, and nothing else.
const OPERATIONS: [(&str, &str); 13] = [
    ("post", "/api/v1/login"),
    ("get", "/api/v1/me"),
    ("get", "/api/v1/pending"),
    ("post", "/api/v1/pending/code"),
    ("get", "/api/v1/inbox"),
    ("get", "/api/v1/inbox/{session_id}"),
    ("post", "/api/v1/inbox/{session_id}/claim"),
    ("post", "/api/v1/inbox/{session_id}/decision"),
    ("get", "/api/v1/admin/ledger/head"),
    ("get", "/api/v1/authz/forward-auth"),
    ("get", "/api/v1/authz/auth-request"),
    ("get", "/healthz"),
    ("get", "/api/v1/openapi.json"),
];

/// DESIGN.md §4's `Summary`, in the notation of [`Spec::shape`].
fn summary() -> Map<String, Value> {
    let Value::Object(map) = json!({
        "session_id": "string",
        "requester": {"id": "string", "username": "string", "display_name": "string"},
        "created_at": "string",
        "age_seconds": "integer",
        "level": ["new", "aging", "overdue"],
        "client": {"ip": "string", "user_agent": "string"},
        "claimed_by": {"null|": {"display_name": "string"}},
    }) else {
        unreachable!()
    };
    map
}

fn error_body() -> Value {
    json!({"error": {
        "code": ["unauthenticated", "forbidden", "self_review", "not_found", "already_decided",
                 "expired", "invalid", "rate_limited", "unavailable", "internal"],
        "message": "string",
    }})
}

/// (method, path, status) → the body DESIGN.md gives it.
fn expected_responses() -> Vec<(&'static str, &'static str, &'static str, Value)> {
    let mut detail = summary();
    detail.insert("code".into(), json!("string"));
    vec![
        (
            "post",
            "/api/v1/login",
            "200",
            json!({"state": ["half_authenticated", "authenticated"]}),
        ),
        (
            "get",
            "/api/v1/me",
            "200",
            json!({
                "user": {"id": "string", "username": "string", "display_name": "string",
                         "roles": {"[]": ["reviewer", "admin"]}},
                "state": ["half_authenticated", "authenticated"],
            }),
        ),
        (
            "get",
            "/api/v1/pending",
            "200",
            json!({
                "session_id": "string",
                "code": {"null|": "string"},
                "status": ["pending", "approved", "completed", "denied", "expired", "withdrawn"],
                "created_at": "string",
                "expires_at": "string",
                "reviewers_online": "integer",
            }),
        ),
        (
            "post",
            "/api/v1/pending/code",
            "200",
            json!({"code": "string", "expires_at": "string"}),
        ),
        (
            "get",
            "/api/v1/inbox",
            "200",
            json!({"sessions": {"[]": summary()}}),
        ),
        (
            "get",
            "/api/v1/inbox/{session_id}",
            "200",
            Value::Object(detail),
        ),
        (
            "post",
            "/api/v1/inbox/{session_id}/decision",
            "200",
            json!({"entry": {"seq": "integer", "entry_id": "string", "entry_hash": "string",
                             "decided_at": "string"}}),
        ),
        (
            "get",
            "/api/v1/admin/ledger/head",
            "200",
            json!({
                "seq": "integer",
                "head_hash": "string",
                "snapshot": {"filename": "string", "bytes": "integer", "blake3": "string",
                             "sha256": "string"},
            }),
        ),
        ("get", "/healthz", "200", json!("string")),
    ]
}

/// The request bodies: (path, body, required properties).
fn expected_requests() -> Vec<(&'static str, Value, &'static [&'static str])> {
    vec![
        (
            "/api/v1/login",
            // `rd` is §10's return-to, optional.
            json!({"username": "string", "password": "string", "rd": {"null|": "string"}}),
            &["username", "password"],
        ),
        (
            "/api/v1/inbox/{session_id}/decision",
            json!({
                "outcome": ["approve", "deny", "mismatch"],
                "channel": ["call", "chat", "video", "in_person", "other"],
                "code_confirmed": "boolean",
                "note": "string",
            }),
            &["outcome", "channel", "code_confirmed", "note"],
        ),
    ]
}

/// The document, with `$ref`s resolved on the way.
struct Spec(Value);

impl Spec {
    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(pointer) => {
                let pointer = pointer.strip_prefix('#').expect("a local $ref");
                self.resolve(self.0.pointer(pointer).expect("the $ref resolves"))
            }
            None => schema,
        }
    }

    fn operation(&self, method: &str, path: &str) -> &Value {
        &self.0["paths"][path][method]
    }

    fn response_schema(&self, method: &str, path: &str, status: &str) -> &Value {
        let content = &self.operation(method, path)["responses"][status]["content"];
        let media = content
            .as_object()
            .and_then(|c| c.values().next())
            .unwrap_or_else(|| panic!("{method} {path} {status} has a body"));
        &media["schema"]
    }

    /// The alternatives of a `oneOf`/`anyOf`, without the `null` one, and
    /// whether there was one.
    fn without_null<'a>(&'a self, schema: &'a Value) -> (Vec<&'a Value>, bool) {
        let any = schema
            .get("oneOf")
            .or_else(|| schema.get("anyOf"))
            .and_then(Value::as_array);
        let Some(any) = any else {
            return (vec![schema], false);
        };
        let (nulls, rest): (Vec<&Value>, Vec<&Value>) = any
            .iter()
            .partition(|s| self.resolve(s).get("type") == Some(&json!("null")));
        (rest, !nulls.is_empty())
    }

    /// The properties of an object schema, `allOf` parts (serde's flatten)
    /// merged in.
    fn properties(&self, schema: &Value) -> Map<String, Value> {
        let schema = self.resolve(schema);
        let mut all = Map::new();
        for part in schema
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            all.extend(self.properties(part));
        }
        if let Some(own) = schema.get("properties").and_then(Value::as_object) {
            all.extend(own.clone());
        }
        all
    }

    fn required(&self, schema: &Value) -> BTreeSet<String> {
        let schema = self.resolve(schema);
        let mut all: BTreeSet<String> = schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        for part in schema
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            all.extend(self.required(part));
        }
        all
    }

    /// A schema reduced to what DESIGN.md fixes: an object is the map of its
    /// property names to their shapes, an array `{"[]": items}`, a nullable
    /// value `{"null|": value}`, an enum the list of its values, anything
    /// else its type name.
    fn shape(&self, schema: &Value) -> Value {
        let schema = self.resolve(schema);
        let (alternatives, nullable) = self.without_null(schema);
        if nullable {
            assert_eq!(alternatives.len(), 1, "one non-null alternative: {schema}");
            return json!({"null|": self.shape(alternatives[0])});
        }
        if let Some(values) = schema.get("enum") {
            return values.clone();
        }
        match schema.get("type") {
            Some(Value::Array(types)) => {
                let rest: Vec<&Value> = types.iter().filter(|t| *t != "null").collect();
                assert_eq!(rest.len(), 1, "one non-null type: {schema}");
                let mut one = schema.clone();
                one["type"] = rest[0].clone();
                if rest.len() < types.len() {
                    json!({"null|": self.shape(&one)})
                } else {
                    self.shape(&one)
                }
            }
            Some(t) if t == "array" => json!({"[]": self.shape(&schema["items"])}),
            Some(t) if t != "object" => t.clone(),
            _ => Value::Object(
                self.properties(schema)
                    .iter()
                    .map(|(name, s)| (name.clone(), self.shape(s)))
                    .collect(),
            ),
        }
    }

    /// Whether a real value fits a schema: the exact set of property names
    /// at every level, enum values, and types.
    fn check(&self, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
        let schema = self.resolve(schema);
        let (alternatives, nullable) = self.without_null(schema);
        if value.is_null() && nullable {
            return Ok(());
        }
        if alternatives.len() > 1 || alternatives[0] != schema {
            return alternatives
                .iter()
                .find_map(|s| self.check(s, value, at).ok())
                .ok_or_else(|| format!("{at}: {value} fits no alternative of {schema}"));
        }
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            return if values.contains(value) {
                Ok(())
            } else {
                Err(format!("{at}: {value} is not one of {values:?}"))
            };
        }
        let types: Vec<&str> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec!["object"],
        };
        let fits = types.iter().any(|t| match *t {
            "null" => value.is_null(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "array" => value.is_array(),
            _ => value.is_object(),
        });
        if !fits {
            return Err(format!("{at}: {value} is not of type {types:?}"));
        }
        match value {
            Value::Array(items) => items.iter().enumerate().try_for_each(|(i, item)| {
                self.check(&schema["items"], item, &format!("{at}[{i}]"))
            }),
            Value::Object(fields) => {
                let properties = self.properties(schema);
                let documented: BTreeSet<&String> = properties.keys().collect();
                let sent: BTreeSet<&String> = fields.keys().collect();
                if documented != sent {
                    return Err(format!("{at}: sent {sent:?}, documented {documented:?}"));
                }
                fields.iter().try_for_each(|(name, v)| {
                    self.check(&properties[name], v, &format!("{at}.{name}"))
                })
            }
            _ => Ok(()),
        }
    }

    /// Panics unless `value`, the answer of `method path` with `status`,
    /// fits the schema documented for it.
    fn assert_answer(&self, method: &str, path: &str, status: u16, value: &Value) {
        let schema = self.response_schema(method, path, &status.to_string());
        if let Err(why) = self.check(schema, value, "$") {
            panic!("{method} {path} {status}: {why}");
        }
    }
}

async fn fetch_spec(app: &TestApp) -> Spec {
    // Anonymous, and then half-authenticated: both may read it.
    let (status, document) = app.get_json(&app.client(), "/api/v1/openapi.json").await;
    assert_eq!(status, 200, "{document}");
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3.1"),
        "OpenAPI 3.1: {}",
        document["openapi"]
    );
    Spec(document)
}

fn operations_of(spec: &Spec) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (path, item) in spec.0["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            if ["get", "post", "put", "patch", "delete", "head", "options"]
                .contains(&method.as_str())
            {
                found.insert((method.clone(), path.clone()));
            }
        }
    }
    found
}

#[tokio::test]
async fn the_openapi_document_matches_design_md_and_the_real_answers() {
    let app = spawn_app().await;
    let spec = fetch_spec(&app).await;

    // Every route, with its method, and nothing else.
    let expected: BTreeSet<(String, String)> = OPERATIONS
        .iter()
        .map(|(m, p)| ((*m).to_string(), (*p).to_string()))
        .collect();
    assert_eq!(operations_of(&spec), expected);

    // Every response body's fields, at every level, with the enums.
    for (method, path, status, design) in expected_responses() {
        let schema = spec.response_schema(method, path, status);
        assert_eq!(spec.shape(schema), design, "{method} {path} {status}");
    }
    // Every request body's fields, and which are required.
    for (path, design, required) in expected_requests() {
        let body = &spec.operation("post", path)["requestBody"];
        let schema = &body["content"]["application/json"]["schema"];
        assert_eq!(spec.shape(schema), design, "POST {path} body");
        let required: BTreeSet<String> = required.iter().map(|s| (*s).to_string()).collect();
        assert_eq!(spec.required(schema), required, "POST {path} required");
    }
    // Every error answer is the error shape; the claim answers 204, no body.
    for (method, path) in OPERATIONS {
        let responses = spec.operation(method, path)["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} has responses"));
        for status in responses.keys().filter(|s| s.as_str() >= "400") {
            let schema = spec.response_schema(method, path, status);
            assert_eq!(spec.shape(schema), error_body(), "{method} {path} {status}");
        }
    }
    let claim = &spec.operation("post", "/api/v1/inbox/{session_id}/claim")["responses"];
    assert!(claim["204"].is_object() && claim["204"].get("content").is_none());
    // The forward-auth answers name the headers a proxy copies (§10).
    for path in ["/api/v1/authz/forward-auth", "/api/v1/authz/auth-request"] {
        let ok = &spec.operation("get", path)["responses"]["200"]["headers"];
        let names: BTreeSet<&str> = ok.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            names,
            BTreeSet::from([
                "Remote-User",
                "Remote-Name",
                "Remote-Groups",
                "Remote-Session-Expires"
            ]),
            "{path}"
        );
    }
    let redirect = &spec.operation("get", "/api/v1/authz/forward-auth")["responses"]["302"];
    assert!(redirect["headers"]["Location"].is_object());

    real_answers_fit(&app, &spec).await;
    app.stop().await;
}

/// A whole review over the API, each answer checked against the document.
async fn real_answers_fit(app: &TestApp, spec: &Spec) {
    app.add_user("uma", "Uma User", PLAIN).await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    app.add_user("ada", "Ada Admin", ADMIN).await;

    // Every documented operation answers an anonymous caller with a
    // documented status (so none is missing from the router).
    for (method, path) in OPERATIONS {
        let url = app.url(&path.replace("{session_id}", "ps_nope"));
        let client = app.client();
        let request = if method == "post" {
            app.post(&client, &path.replace("{session_id}", "ps_nope"))
                .json(&json!({}))
        } else {
            client.get(url)
        };
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let documented = &spec.operation(method, path)["responses"][status.to_string()];
        assert!(
            documented.is_object(),
            "{method} {path}: {status} is not documented"
        );
        if status >= 400 {
            let body: Value = response.json().await.expect("a JSON error");
            spec.assert_answer(method, path, status, &body);
        }
    }

    let requester = app.client();
    let login = app.login_api(&requester, "uma", &password_of("uma")).await;
    let body: Value = login.json().await.expect("json");
    spec.assert_answer("post", "/api/v1/login", 200, &body);
    // The document is public to a half-authenticated browser too.
    let (status, _) = app.get_json(&requester, "/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    for path in ["/api/v1/me", "/api/v1/pending"] {
        let (status, body) = app.get_json(&requester, path).await;
        spec.assert_answer("get", path, status, &body);
    }
    let (status, body) = app
        .post_json(&requester, "/api/v1/pending/code", json!({}))
        .await;
    spec.assert_answer("post", "/api/v1/pending/code", status, &body);
    let (_, pending) = app.get_json(&requester, "/api/v1/pending").await;
    let id = pending["session_id"].as_str().expect("a session id");

    let rita = reviewer(app, "rita").await;
    let (status, me) = app.get_json(&rita, "/api/v1/me").await;
    spec.assert_answer("get", "/api/v1/me", status, &me);
    // The check is not vacuous: an extra field, a missing one, a value
    // outside an enum and a wrong type each fail it.
    let schema = spec.response_schema("get", "/api/v1/me", "200");
    for broken in [
        json!({"user": me["user"], "state": "authenticated", "extra": 1}),
        json!({"user": me["user"]}),
        json!({"user": me["user"], "state": "signed_in"}),
        json!({"user": {"id": "u", "username": "u", "display_name": "u", "roles": ["root"]},
               "state": "authenticated"}),
        json!({"user": {"id": 1, "username": "u", "display_name": "u", "roles": []},
               "state": "authenticated"}),
    ] {
        assert!(spec.check(schema, &broken, "$").is_err(), "{broken}");
    }
    let (status, inbox) = app.get_json(&rita, "/api/v1/inbox").await;
    assert_eq!(inbox["sessions"].as_array().map(Vec::len), Some(1));
    spec.assert_answer("get", "/api/v1/inbox", status, &inbox);
    let claim = app
        .post(&rita, &format!("/api/v1/inbox/{id}/claim"))
        .json(&json!({}))
        .send()
        .await
        .expect("claim");
    assert_eq!(claim.status(), 204);
    // Claimed now: `claimed_by` is an object, checked too.
    let (status, detail) = app.get_json(&rita, &format!("/api/v1/inbox/{id}")).await;
    assert!(detail["claimed_by"].is_object(), "{detail}");
    spec.assert_answer("get", "/api/v1/inbox/{session_id}", status, &detail);
    let path = format!("/api/v1/inbox/{id}/decision");
    let (status, refused) = app
        .post_json(
            &rita,
            &path,
            json!({"outcome": "approve", "channel": "call", "code_confirmed": false, "note": ""}),
        )
        .await;
    assert_eq!(status, 422);
    spec.assert_answer(
        "post",
        "/api/v1/inbox/{session_id}/decision",
        status,
        &refused,
    );
    let (status, decided) = app.post_json(&rita, &path, approve()).await;
    assert_eq!(status, 200, "{decided}");
    spec.assert_answer(
        "post",
        "/api/v1/inbox/{session_id}/decision",
        status,
        &decided,
    );
    let (status, again) = app.post_json(&rita, &path, approve()).await;
    spec.assert_answer(
        "post",
        "/api/v1/inbox/{session_id}/decision",
        status,
        &again,
    );

    let (status, forbidden) = app.get_json(&rita, "/api/v1/admin/ledger/head").await;
    assert_eq!(status, 403);
    spec.assert_answer("get", "/api/v1/admin/ledger/head", status, &forbidden);
    let admin = reviewer(app, "ada").await;
    let (status, head) = app.get_json(&admin, "/api/v1/admin/ledger/head").await;
    assert_eq!(head["seq"], 1, "{head}");
    spec.assert_answer("get", "/api/v1/admin/ledger/head", status, &head);
}
