//! The e-mail route: one plain-text message to the tenant's recipients through the SMTP relay,
//! over STARTTLS (a plain connection only to a loopback relay); 4xx and connection errors are
//! retried, 5xx is final.

use super::*;

fn mail(relay: &SmtpRelay, to: &[String], delivery: &Delivery) -> Result<Message, AlertRouteError> {
    let from = relay
        .from
        .parse::<Mailbox>()
        .map_err(|e| invalid("smtp.from", e.to_string()))?;
    let mut builder = Message::builder()
        .from(from)
        .subject(delivery.subject.clone())
        .header(ContentType::TEXT_PLAIN);
    for address in to {
        let mailbox = address.parse::<Mailbox>().map_err(|e| {
            invalid(
                format!("{}.email_to", delivery.audience.section()),
                format!("{address:?}: {e}"),
            )
        })?;
        builder = builder.to(mailbox);
    }
    builder
        .body(delivery.text.clone())
        .map_err(|e| AlertRouteError::Smtp {
            relay: relay.address(),
            detail: e.to_string(),
        })
}

pub(super) async fn send_mail(
    relay: &SmtpRelay,
    to: &[String],
    delivery: &Delivery,
    policy: &RetryPolicy,
) -> Result<(), AlertRouteError> {
    let message = mail(relay, to, delivery)?;
    let smtp_error = |detail: String| AlertRouteError::Smtp {
        relay: relay.address(),
        detail,
    };
    let builder = if relay.starttls {
        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&relay.host)
            .map_err(|e| smtp_error(chain(&e)))?
    } else {
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(relay.host.as_str())
    };
    let mut builder = builder
        .port(relay.port)
        .timeout(Some(policy.attempt_timeout));
    if let (Some(user), Some(password)) = (&relay.username, &relay.password) {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            password.expose_secret().to_owned(),
        ));
    }
    let mailer = builder.build();
    let (mailer, message, smtp_error) = (&mailer, &message, &smtp_error);
    retrying(policy, "email", &delivery.id, || async move {
        match mailer.send(message.clone()).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(Attempt::GiveUp(smtp_error(chain(&e)))),
            Err(e) => Err(Attempt::Retry(smtp_error(chain(&e)))),
        }
    })
    .await
}
