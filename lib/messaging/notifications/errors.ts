/** Errors of partner notifications. One base class so callers can catch the family. */
export class NotificationError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** One problem with a notification: the field path and what was expected vs got. */
export interface NotificationIssue {
  path: string;
  message: string;
}

/** The notification does not match the documented schema (schema/notification.schema.json). */
export class InvalidNotificationError extends NotificationError {
  constructor(readonly issues: NotificationIssue[]) {
    super(`invalid notification: ${issues.map((i) => `${i.path || "(root)"}: ${i.message}`).join("; ")}`);
  }
}

/** The publisher options are unusable (missing topic, no way to reach the namespace, ...). */
export class NotificationConfigError extends NotificationError {
  constructor(
    readonly field: string,
    expected: string,
    got: string,
  ) {
    super(`invalid notification publisher option ${field}: expected ${expected}, got ${got}`);
  }
}

/** Service Bus refused or did not take the message. Never carries connection strings or tokens. */
export class NotificationPublishError extends NotificationError {
  constructor(
    readonly topicName: string,
    readonly messageId: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`publishing notification ${messageId} to topic "${topicName}" failed: ${reason}`, options);
  }
}
