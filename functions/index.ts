// Entry point of the Functions app (package.json "main"): every module registers its functions on import.
import "../orchestrations/federation";
import "../orchestrations/siloGroup";
import "../orchestrations/siloRound";
import "./activities";
import "./federationsApi";
import "./triggers";
