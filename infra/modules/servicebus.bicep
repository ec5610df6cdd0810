// Service Bus namespace (Entra auth only) with the job-events queue (Event Grid -> flo), one command
// queue per partner (`partner-<name>`, partner -> flo: only that partner may send to it, so the queue
// identifies the sender), their `-rejected` queues (flo -> operators) and the notifications topic
// (flo -> partners).
import { partnerQueueName } from '../names.bicep'

param location string
param tags object
param namespaceName string
param jobEventsQueueName string
param notificationsTopicName string
@description('Deliveries before a message is dead-lettered (Functions abandons on a thrown handler).')
param maxDeliveryCount int
@description('ISO 8601 duration; at least as long as Event Grid may redeliver one event (its TTL).')
param duplicateDetectionWindow string
@description('Per partner: a command queue and a subscription on the notifications topic.')
param partnerNames string[]

var partnerQueueNames = [for partner in partnerNames: partnerQueueName(partner)]

resource namespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' = {
  name: namespaceName
  location: location
  tags: tags
  sku: { name: 'Standard', tier: 'Standard' }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource jobEventsQueue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = {
  parent: namespace
  name: jobEventsQueueName
  properties: {
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: duplicateDetectionWindow
    deadLetteringOnMessageExpiration: true
    maxDeliveryCount: maxDeliveryCount
    lockDuration: 'PT1M'
    defaultMessageTimeToLive: 'P7D'
  }
}

// No shared partner queue: Service Bus does not tell a receiver who sent a message, so a sender name
// inside a shared queue's messages would be a claim any partner could make.
resource partnerQueues 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = [for queueName in partnerQueueNames: {
  parent: namespace
  name: queueName
  properties: {
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: duplicateDetectionWindow
    deadLetteringOnMessageExpiration: true
    maxDeliveryCount: maxDeliveryCount
    lockDuration: 'PT1M'
    defaultMessageTimeToLive: 'P7D'
  }
}]

// Where flo puts a message it rejects, with DeadLetterReason/DeadLetterErrorDescription properties
// (lib/federation/inbox.ts rejectMessage: the Node worker cannot dead-letter a trigger's message).
// Names follow the app's rejectedQueueName(): `<queue>-rejected`. Nobody consumes them; operators read them.
// Index 0: job-events; index 1 + i: partner i.
resource rejectedQueues 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = [for queueName in concat([jobEventsQueueName], partnerQueueNames): {
  parent: namespace
  name: '${queueName}-rejected'
  properties: {
    // A message rejected again after a redelivery keeps its MessageId: dropped as a duplicate.
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: duplicateDetectionWindow
    deadLetteringOnMessageExpiration: true
    maxDeliveryCount: maxDeliveryCount
    lockDuration: 'PT1M'
    defaultMessageTimeToLive: 'P14D'
  }
}]

resource notificationsTopic 'Microsoft.ServiceBus/namespaces/topics@2022-10-01-preview' = {
  parent: namespace
  name: notificationsTopicName
  properties: {
    // flo's message ids are <federationId>:<type>:<round>: a retried activity's re-send is dropped.
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: duplicateDetectionWindow
    defaultMessageTimeToLive: 'P14D'
  }
}

resource partnerSubscriptions 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2022-10-01-preview' = [for partner in partnerNames: {
  parent: notificationsTopic
  name: partner
  properties: {
    deadLetteringOnMessageExpiration: true
    maxDeliveryCount: maxDeliveryCount
    lockDuration: 'PT1M'
  }
}]

output namespaceName string = namespace.name
output fullyQualifiedNamespace string = '${namespace.name}.servicebus.windows.net'
output jobEventsQueueId string = jobEventsQueue.id
output jobEventsQueueName string = jobEventsQueue.name
output jobEventsRejectedQueueName string = rejectedQueues[0].name
@description('partnerQueueNames[i] is partnerNames[i]\'s command queue.')
output partnerQueueNames string[] = [for i in range(0, length(partnerNames)): partnerQueues[i].name]
output partnerRejectedQueueNames string[] = [for i in range(0, length(partnerNames)): rejectedQueues[i + 1].name]
output notificationsTopicName string = notificationsTopic.name
