//! The NATS route: a core publish of the JSON body on the audience's subject with `Nats-Msg-Id`
//! set to the delivery id (so JetStream, where it listens, drops repeats).

use super::*;

pub(super) async fn publish(
    client: &async_nats::Client,
    delivery: &Delivery,
) -> Result<(), AlertRouteError> {
    let subject = delivery.audience.subject();
    let nats_error = |detail: String| AlertRouteError::Nats {
        subject: subject.clone(),
        detail,
    };
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", delivery.id.as_str());
    headers.insert("Restorable-Event-Type", delivery.event_type);
    client
        .publish_with_headers(subject.clone(), headers, delivery.body.clone())
        .await
        .map_err(|e| nats_error(chain(&e)))?;
    client.flush().await.map_err(|e| nats_error(chain(&e)))
}
