//! `POST /verify` on the internal listener: RFC 7662 introspection for resource servers
//! and other gateways. Callers authenticate as clients registered with `introspect = true`.
//! Only live access tokens are reported active; anything else is `{"active":false}`.

use super::error::{store_error, EndpointError};
use super::proof::token_type;
use super::protocol::{ErrorCode, OAuthError};
use super::{OAuthRequest, OAuthServer};
use crate::body::Body;
use crate::error::json_response;
use crate::store::token_hash;
use crate::store::RecordKind;
use http::{Response, StatusCode};
use serde_json::json;

impl OAuthServer {
    pub(super) async fn introspect(
        &self,
        req: &OAuthRequest,
    ) -> Result<Response<Body>, EndpointError> {
        let result = async {
            let (authed, form) = self.client_form(req).await?;
            if !authed.client.introspect {
                return Err(OAuthError::new(
                    ErrorCode::InvalidClient,
                    "this client may not introspect tokens",
                ));
            }
            let token = form.require("token", "token is required")?;
            let record = self
                .store
                .get(token_hash(token))
                .await
                .map_err(store_error)?;
            let now = self.now();
            Ok(
                match record.filter(|r| r.kind == RecordKind::Access && r.is_live(now)) {
                    None => json!({ "active": false }),
                    Some(r) => {
                        let aud = self.audience(&r);
                        let mut answer = json!({
                            "active": true,
                            "scope": r.scopes.join(" "),
                            "client_id": r.client_id,
                            "sub": r.sub,
                            "exp": r.expires_at,
                            "iat": r.issued_at,
                            "token_type": token_type(r.jkt.as_deref()),
                            "iss": self.settings.issuer,
                            "aud": aud,
                        });
                        if let Some(username) = r.username {
                            answer["username"] = json!(username);
                        }
                        // RFC 9449 §6.2: a bound token's key, for resource servers to check
                        // the proofs it comes with.
                        if let Some(jkt) = r.jkt {
                            answer["cnf"] = json!({ "jkt": jkt });
                        }
                        answer
                    }
                },
            )
        }
        .await;
        match result {
            Ok(answer) => Ok(json_response(StatusCode::OK, answer.to_string())),
            Err(error) => Err(req.protocol_error(error)),
        }
    }
}
