// Deployed into the silo's resource group: the Event Grid system topic of the silo's Azure ML
// workspace, with a system-assigned identity used to deliver events to flo's job-events queue.
// Azure allows one system topic per source resource: reuse an existing one by name if the silo has it.
param systemTopicName string
param workspaceName string
param tags object

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-04-01' existing = {
  name: workspaceName
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: systemTopicName
  location: workspace.location
  tags: tags
  identity: { type: 'SystemAssigned' }
  properties: {
    source: workspace.id
    topicType: 'Microsoft.MachineLearningServices.Workspaces'
  }
}

output systemTopicName string = systemTopic.name
output principalId string = systemTopic.identity.principalId
