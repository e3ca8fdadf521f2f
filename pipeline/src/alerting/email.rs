//! The e-mail route: one plain-text message to the tenant's recipients through the SMTP relay,
//! over STARTTLS (a plain connection only to a loopback relay); 4xx and connection errors are
//! retried, 5xx is final. [`send_letter`] also sends the daily digest ([`crate::digest`]).

use super::*;

/// One plain-text e-mail: who it is for and what it says.
#[derive(Clone, Debug)]
pub struct Letter {
    /// The recipients.
    pub to: Vec<String>,
    /// The setting the recipients come from (`alert_routes.<tenant>`), named in errors.
    pub section: String,
    /// The subject line.
    pub subject: String,
    /// The body.
    pub text: String,
    /// What it is, for logs (a delivery id, `digest/<tenant>/<day>`).
    pub id: String,
}

fn mail(relay: &SmtpRelay, letter: &Letter) -> Result<Message, AlertRouteError> {
    let from = relay
        .from
        .parse::<Mailbox>()
        .map_err(|e| invalid("smtp.from", e.to_string()))?;
    let mut builder = Message::builder()
        .from(from)
        .subject(letter.subject.clone())
        .header(ContentType::TEXT_PLAIN);
    for address in &letter.to {
        let mailbox = address.parse::<Mailbox>().map_err(|e| {
            invalid(
                format!("{}.email_to", letter.section),
                format!("{address:?}: {e}"),
            )
        })?;
        builder = builder.to(mailbox);
    }
    builder
        .body(letter.text.clone())
        .map_err(|e| AlertRouteError::Smtp {
            relay: relay.address(),
            detail: e.to_string(),
        })
}

/// Sends one alert delivery to `to`.
pub(super) async fn send_mail(
    relay: &SmtpRelay,
    to: &[String],
    delivery: &Delivery,
    policy: &RetryPolicy,
) -> Result<(), AlertRouteError> {
    let letter = Letter {
        to: to.to_vec(),
        section: delivery.audience.section(),
        subject: delivery.subject.clone(),
        text: delivery.text.clone(),
        id: delivery.id.clone(),
    };
    send_letter(relay, &letter, policy).await
}

/// Sends `letter` through `relay`, retried under `policy`.
///
/// # Errors
/// [`AlertRouteError::Invalid`] for an address that does not parse, [`AlertRouteError::Smtp`]
/// (or [`AlertRouteError::GaveUp`]) when the relay refused it or could not be reached.
pub async fn send_letter(
    relay: &SmtpRelay,
    letter: &Letter,
    policy: &RetryPolicy,
) -> Result<(), AlertRouteError> {
    let message = mail(relay, letter)?;
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
    retrying(policy, "email", &letter.id, || async move {
        match mailer.send(message.clone()).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(Attempt::GiveUp(smtp_error(chain(&e)))),
            Err(e) => Err(Attempt::Retry(smtp_error(chain(&e)))),
        }
    })
    .await
}
