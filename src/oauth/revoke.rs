//! `POST /oauth/revoke` (RFC 7009). Revoking an access token revokes that token; revoking
//! a refresh token revokes its whole grant, access tokens included (§2.1). Unknown tokens
//! get 200 too (§2.2): the client learns nothing it did not know.

use super::error::{store_error, EndpointError};
use super::protocol::{ErrorCode, OAuthError};
use super::{OAuthRequest, OAuthServer};
use crate::body::Body;
use crate::error::json_response;
use crate::store::token_hash;
use crate::store::RecordKind;
use http::{Response, StatusCode};

impl OAuthServer {
    pub(super) async fn revoke(&self, req: &OAuthRequest) -> Result<Response<Body>, EndpointError> {
        let result = async {
            let (authed, form) = self.client_form(req).await?;
            let token = form.require("token", "token is required")?;
            let hash = token_hash(token);
            let Some(record) = self.store.get(hash).await.map_err(store_error)? else {
                return Ok(());
            };
            if record.client_id != authed.client.id {
                return Err(OAuthError::new(
                    ErrorCode::UnauthorizedClient,
                    "the token was issued to another client",
                ));
            }
            match record.kind {
                RecordKind::Refresh => {
                    self.revoke_grant(&record.grant_id).await;
                    crate::audit::token_revoked("refresh", &record.client_id, &record.sub);
                }
                RecordKind::Access => {
                    self.store.revoke(hash).await.map_err(store_error)?;
                    crate::audit::token_revoked("access", &record.client_id, &record.sub);
                }
                // Codes and sessions are not tokens a client can revoke here.
                RecordKind::Code | RecordKind::Session => {}
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => Ok(json_response(StatusCode::OK, "{}".to_string())),
            Err(error) => Err(req.protocol_error(error)),
        }
    }
}
