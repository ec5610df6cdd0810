// The orchestrator's storage account: Functions host + Durable task hub (blob/queue/table), the
// Flex Consumption deployment package, and flo's model container. Identity-only: no shared keys.
param location string
param tags object
param storageAccountName string
param deploymentContainerName string
param modelContainerName string
@description('Durable task hub name (host.json extensions.durableTask.hubName): its blob containers are created here.')
param taskHubName string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    defaultToOAuthAuthentication: true
    publicNetworkAccess: 'Enabled'
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: { publicAccess: 'None' }
}

resource modelContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: modelContainerName
  properties: { publicAccess: 'None' }
}

// The containers the Functions host and the Durable task hub write, pre-created so the app's blob
// role can be granted on each of them instead of on the whole account (the host's CreateIfNotExists
// then finds them). Host: azure-webjobs-hosts (host id lock, timer schedules), azure-webjobs-secrets
// (function keys). Durable (Azure Storage provider): <hub>-leases (partition leases), <hub>-applease
// (app lease), <hub>-largemessages (payloads above the inline limit).
var hostContainerNames = [
  'azure-webjobs-hosts'
  'azure-webjobs-secrets'
  '${toLower(taskHubName)}-leases'
  '${toLower(taskHubName)}-applease'
  '${toLower(taskHubName)}-largemessages'
]

resource hostContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for containerName in hostContainerNames: {
  parent: blobService
  name: containerName
  properties: { publicAccess: 'None' }
}]

output storageAccountName string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output tableEndpoint string = storage.properties.primaryEndpoints.table
output deploymentContainerName string = deploymentContainer.name
output modelContainerName string = modelContainer.name
output hostContainerNames array = [for (containerName, i) in hostContainerNames: hostContainers[i].name]
