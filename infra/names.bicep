// Names generated from user input (workspace names, azd environment names, silo and partner names),
// kept valid by construction. Imported by main.bicep and silo.bicep; test/infra.test.ts evaluates them.

@export()
@description('Event Grid system topic of a silo workspace. Topic names allow letters, digits and \'-\'; Azure ML workspace names may also contain \'_\'.')
func systemTopicName(workspaceName string) string => 'evgt-${replace(workspaceName, '_', '-')}'

@export()
@description('flo\'s event subscription on a silo topic (letters, digits and \'-\', at most 64 characters); azd environment names may contain \'_\' or \'.\'.')
func eventSubscriptionName(orchestratorName string) string => 'flo-${replace(replace(orchestratorName, '_', '-'), '.', '-')}-job-events'

@export()
@description('A nested deployment name: deployment names are limited to 64 characters, so longer ones keep their first 50 and a hash of the whole (13 characters).')
func deploymentName(name string) string => length(name) <= 64 ? name : '${take(name, 50)}-${uniqueString(name)}'

@export()
@description('The queue a partner sends its commands to: the queue, not a message property, tells flo who sent a command.')
func partnerQueueName(partnerName string) string => 'partner-${partnerName}'
