// Deployed into the silo's resource group by the orchestrator's deployment (main.bicep), for every
// silo: delivers the workspace's flo-tagged job events (RunStatusChanged, RunCompleted) to flo's
// job-events queue, authenticated as the system topic's managed identity (deployed after
// event-sender-role.bicep gave that identity Data Sender). The orchestrator side creates it because
// creating a subscription with a Service Bus destination needs write access to that queue, which
// silo admins do not get; for selfManaged silos the silo admin granted the deployer just this
// (silo-deployer-access.bicep).
param systemTopicName string
param eventSubscriptionName string
param jobEventsQueueId string
@description('Value of the floApp job tag flo puts on its jobs; other runs never reach the queue.')
param floAppTagValue string
@description('Event Grid retries an undelivered event for this long; keep <= the queue duplicate-detection window.')
param eventTimeToLiveInMinutes int

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

resource jobEvents 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: systemTopic
  name: eventSubscriptionName
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    deliveryWithResourceIdentity: {
      identity: { type: 'SystemAssigned' }
      destination: {
        endpointType: 'ServiceBusQueue'
        properties: { resourceId: jobEventsQueueId }
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.MachineLearningServices.RunStatusChanged'
        'Microsoft.MachineLearningServices.RunCompleted'
      ]
      // The payload's key is data.runTags (camel case, as in the Azure ML event schema); tag keys
      // carry no dots: Event Grid uses dots as path separators in filter keys.
      advancedFilters: [
        {
          operatorType: 'StringIn'
          key: 'data.runTags.floApp'
          values: [ floAppTagValue ]
        }
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
  }
}
