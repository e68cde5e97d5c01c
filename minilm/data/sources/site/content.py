"""What the Millbrook Gazette writes: the town's text, and the drafts of its pages.

The site is the paper of a small town in the course's world (`minilm.world`): its people, their jobs
and the places they go come from there; what only a newspaper has (streets, town events, landmarks,
news sentences, recipes, product reviews, forum posts, pages in French, German and Spanish) is
written here. A writer turns it into a *draft*: a page's title and main content as blocks of text,
without any HTML. The drafts' lines are the truth the extractor is scored against; `pages.py` wraps
them in markup.
"""

from __future__ import annotations

import random
import re
import unicodedata
from dataclasses import dataclass, field

from minilm.data.filters import dedup
from minilm.world import (
    ALL_NAMES, BAD_FEELINGS, COLOURS, DAYS, GENDERS, GOOD_FEELINGS, JOBS, LANGUAGES, MONTHS, NAMES, OBJECTS, PLACES,
    RELATIVES, SURNAMES, pronouns, with_article,
)  # fmt: skip

SITE_NAME = "Millbrook Gazette"
TOWN = "Millbrook"

# --------------------------------------------------------------------------------------------------
# The town. Its people, their jobs, the world's places, things, days and feelings come from the world
# (`minilm.world`); the streets, landmarks and events are the paper's own.

STREETS = ["Mill Street", "Church Road", "River Lane", "Station Road", "Baker Row", "Elm Close",
           "High Street", "Orchard Way", "Quarry Hill", "Bridge End"]
LANDMARKS = ("the bakery on Mill Street", "the town library", "the old mill", "Oak Lane School",
             "the community hospital", "the fire station", "the train station", "the town hall",
             "the sports ground", "the swimming pool", "the museum")
TOWN_PLACES = tuple(f"the {place}" for place in PLACES) + LANDMARKS
EVENTS = ["the spring fair", "the harvest festival", "the river clean-up", "the charity run",
          "the summer concert", "the book sale", "the opening of the new bridge", "the flower show",
          "the school play", "the farmers' market", "the winter lights parade", "the kite festival"]

NEWS_TITLES = [
    "Local {job} {first} {surname} opens the doors of {place}",
    "{event_cap} draws a record crowd to {place}",
    "{first} {surname} named {job} of the year",
    "New plans for {place} divide {town}",
    "Volunteers needed for {event}",
    "{job_cap} {first} {surname} retires after {n2} years",
    "Storm damage closes {place} for {n} days",
    "Children raise ${big} for {place}",
    "What {event} means for {place}",
    "A busy week for {first} {surname}, the {job} from {street}",
    "{street} reopens after {n} weeks of repairs",
    "Council approves money for {place}",
]
NEWS_SENTENCES = [
    "On {day} morning, {name}, {a_job} who lives on {street}, welcomed more than {big} visitors to {place}.",
    "{name2}, a local {job2}, said the plans for {place} had been discussed for {n} years.",
    "The council confirmed that {event} will return to {place} next {month}.",
    "Volunteers spent {n} hours painting benches and planting flowers near {place2}.",
    "{first} has worked as {a_job} in {town} for {n2} years and knows most of the families by name.",
    "Police closed {street} for {n} hours while a crane lifted {object} over the houses.",
    "The money raised at {event} will pay for new books and a ramp at {place2}.",
    "Children from Oak Lane School sang {n} songs and handed out paper lanterns near {place}.",
    "According to the council, repairs to {place2} will cost about ${big} and last until {month}.",
    "{first2} {surname2} told the Gazette that the queue reached all the way to {street}.",
    "Heavy rain on {day} night flooded part of {street}, but nobody was hurt.",
    "The mayor thanked {first} and {n} other volunteers in a short speech at {place}.",
    "Shops on {street} stayed open late and sold out of bread before {n} o'clock.",
    "A new bus will run every {n} minutes between {place} and {place2} from {month}.",
    "{first} said {he} felt {feeling} when {he} heard the news on {day}.",
    "Some neighbours on {street} worry about the noise, while others say {place2} needs the work.",
    "Last year {event} raised ${big}, and the organisers hope to beat that number in {month}.",
    "The oldest visitor was {n2} years old and came with {n} grandchildren.",
    "Workers found {object} under the floor of {place2} and gave it to the museum.",
    "{name2}, who runs a stall at the market, said business had never been better than this {day}.",
    "{A_job2} from the next valley drove {n2} miles to help with the work at {place}.",
    "The fire station on {street} opened its doors so that families could climb into the engines.",
    "Tickets for {event} cost ${price} for adults and are free for children under {n}.",
    "Engineers checked the bridge near {place2} {n} times before it opened to traffic.",
    "Town records show that {place2} was built in {old_year} as a grain store.",
    "{first} plans to share {his} recipe for apple cake with anyone who visits {place}.",
    "The weather stayed dry until about {n} o'clock, when a cold wind came off the river.",
    "A quiz night at {place2} on {day} will raise money for the community hospital.",
    "Organisers counted {big} cups of tea served from one small tent beside {place}.",
    "{first2} lost {object} during the afternoon, and {a_job} found it an hour later.",
    "The town hall is open every weekday until {n} o'clock for anyone with questions about {event}.",
    "More than {n2} families signed a letter asking the council to protect {place2}.",
    "{first} and {his} {relative} have organised {event} together since {since_year}.",
    "A photographer from the county paper took {n2} pictures of the crowd outside {place}.",
    "The plan includes {n} new benches, a water fountain and better lights along {street}.",
]
QUOTES = [
    "We never expected so many people to come to {place}",
    "It was the best day this town has had in {n} years",
    "Everyone pitched in, from the {job2} to the children",
    "I have lived on {street} all my life and I have never seen anything like it",
    "We will do it all again next {month}",
    "The work is hard, but the people of {town} make it worth it",
    "My {relative} taught me everything I know about being {a_job}",
    "We still need about ${big} to finish the work on {place2}",
]
SUBHEADINGS = ["What happens next", "A busy afternoon", "Looking back", "How to help",
               "The numbers", "Voices from {street}", "Plans for {month}"]

BLOG_TITLES = [
    "A quiet {day} at {place}",
    "What I learned from a week with {a_job}",
    "My first time at {event}",
    "Why I walk to {place} every morning",
    "{n} things I love about {town} in {month}",
    "The {job} who changed my mind about {place2}",
    "Notes from {street}",
    "Rainy days and {object}",
]
BLOG_SENTENCES = [
    "Last {day} I walked down to {place} with my {relative}.",
    "I have lived on {street} for {n} years, and I still find new corners of {town}.",
    "If you have never been to {event}, you should go at least once.",
    "My {relative} says that {place2} looked very different when {she_he} was young.",
    "I met {name}, {a_job}, who told me about {his} work over a cup of tea.",
    "The best part of the day was watching the boats near {place2} for {n} minutes.",
    "I took {n} photos, but none of them show how lovely the light was.",
    "On the way home I stopped at {place2} and bought {object}.",
    "It rained for most of {day}, so I stayed in and read about the history of {place}.",
    "{first} showed me how {a_job} starts the day at {n} o'clock in the morning.",
    "I used to think {place2} was boring, but I was wrong.",
    "The children next door spent {n} hours building a den in the garden.",
    "Some weeks are busy and some are slow, and this one on {street} was slow in the best way.",
    "I asked {first2}, the {job2}, what {he2} likes most about {town}, and {he2} said the people.",
    "Next {month} I want to try the walk from {place} to {place2}.",
    "There is a bench near {place} where I sit and write for {n} minutes every day.",
    "My {relative} laughed when I told {him_her} about {object} I found by the river.",
    "{event_cap} was noisy and crowded, and I loved every minute of it.",
    "If you have tips for a first visit to {place2}, leave them below.",
    "It is funny how a small town like {town} can keep surprising you after {n} years.",
    "We ate lunch at {place} and talked about {event} until it got dark.",
    "The {job2} at {place2} remembered my name, which made my whole {day}.",
]

# Recipes: each dish has a method (bake, pot or pan), its ingredients, and a featured one.
DISHES = {
    "apple cake": ("bake", ["flour", "sugar", "butter", "eggs", "apples", "cinnamon"], "apples"),
    "banana bread": ("bake", ["flour", "sugar", "butter", "eggs", "bananas", "baking powder"], "bananas"),
    "lemon biscuits": ("bake", ["flour", "sugar", "butter", "lemons"], "lemons"),
    "carrot muffins": ("bake", ["flour", "sugar", "eggs", "milk", "carrots", "cinnamon"], "carrots"),
    "cheese scones": ("bake", ["flour", "butter", "milk", "cheese", "baking powder"], "cheese"),
    "berry crumble": ("bake", ["flour", "sugar", "butter", "oats", "berries"], "berries"),
    "honey flapjacks": ("bake", ["oats", "butter", "honey", "sugar"], "honey"),
    "vegetable soup": ("pot", ["onions", "carrots", "potatoes", "olive oil", "vegetable stock"], "potatoes"),
    "bean stew": ("pot", ["onions", "garlic", "tomatoes", "beans", "olive oil", "vegetable stock"], "beans"),
    "tomato pasta": ("pot", ["pasta", "tomatoes", "garlic", "olive oil", "cheese"], "tomatoes"),
    "pea risotto": ("pot", ["rice", "onions", "peas", "butter", "vegetable stock", "cheese"], "peas"),
    "pancakes": ("pan", ["flour", "eggs", "milk", "butter", "lemons"], "lemons"),
}
DISH_STYLES = ["Easy", "Grandma's", "Quick", "Rainy day", "Sunday", "Simple", "Harvest", "Family"]
AMOUNTS = {
    "flour": ["200 g of flour", "250 g of flour", "2 cups of flour"], "sugar": ["100 g of sugar", "150 g of sugar"],
    "butter": ["100 g of butter", "125 g of butter", "a knob of butter"], "eggs": ["2 eggs", "3 eggs"],
    "milk": ["200 ml of milk", "a cup of milk"], "apples": ["3 apples", "4 cooking apples"],
    "bananas": ["3 ripe bananas", "2 large bananas"], "lemons": ["1 lemon", "2 lemons"],
    "carrots": ["2 carrots", "3 carrots"], "cheese": ["100 g of cheese", "a handful of grated cheese"],
    "berries": ["300 g of berries", "2 cups of mixed berries"], "oats": ["150 g of oats", "200 g of oats"],
    "honey": ["3 tablespoons of honey", "4 tablespoons of honey"], "cinnamon": ["1 teaspoon of cinnamon"],
    "baking powder": ["2 teaspoons of baking powder"], "onions": ["1 onion", "2 onions"],
    "potatoes": ["3 potatoes", "500 g of potatoes"], "olive oil": ["2 tablespoons of olive oil"],
    "vegetable stock": ["1 litre of vegetable stock", "750 ml of vegetable stock"],
    "garlic": ["2 cloves of garlic", "3 cloves of garlic"], "tomatoes": ["a tin of tomatoes", "6 ripe tomatoes"],
    "beans": ["2 tins of beans", "400 g of beans"], "pasta": ["300 g of pasta", "400 g of pasta"],
    "rice": ["300 g of risotto rice"], "peas": ["200 g of peas", "a cup of frozen peas"],
}
RECIPE_INTROS = [
    "This {dish} is the one {name}, the {job} from {street}, makes every {day}.",
    "I first ate this {dish} at {event}, and I asked for the recipe straight away.",
    "It takes about {minutes} minutes and feeds {n} hungry people.",
    "My {relative} always made {dish} when the weather turned cold in {month}.",
    "You can make it the night before and keep it in the fridge for {n} days.",
    "Children love helping with this {dish} because there is plenty of stirring.",
]
# The method, stage by stage: one of the alternatives of each stage, in order.
RECIPE_METHODS = {
    "bake": [
        ["Heat the oven to {temp} degrees and grease a tin.",
         "Heat the oven to {temp} degrees and line a tray with paper."],
        ["Mix the {first_ing} and the {second_ing} in a large bowl.",
         "Put the {first_ing} and the {second_ing} in a bowl and stir."],
        ["Add the rest of the ingredients except the {main} and mix until smooth.",
         "Stir in the rest of the ingredients, except the {main}, a little at a time."],
        ["Fold in the {main} gently.", "Add the {main} and give it one last stir."],
        ["Pour the mixture into the tin and bake for {minutes} minutes.",
         "Spoon the mixture onto the tray and bake for {minutes} minutes."],
        ["Leave to cool for {n} minutes before you cut it.", "Let it cool on a rack for {n} minutes."],
    ],
    "pot": [
        ["Chop the {first_ing} and the {second_ing}.", "Peel and dice the {first_ing}, and chop the {second_ing}."],
        ["Warm a little oil in a large pan and cook the {first_ing} gently for {n} minutes.",
         "Soften the {first_ing} in a large pan over a low heat for {n} minutes."],
        ["Add the {main} and the rest of the ingredients and bring to the boil.",
         "Stir in the {main} and everything else, and bring it to the boil."],
        ["Simmer for {minutes} minutes, stirring now and then.",
         "Turn down the heat and simmer for {minutes} minutes."],
        ["Taste, and add a pinch of salt if it needs it.", "Season with salt and pepper."],
        ["Serve hot with fresh bread.", "Serve in warm bowls."],
    ],
    "pan": [
        ["Whisk the flour, eggs and milk into a smooth batter.",
         "Beat the eggs and milk, then whisk in the flour until smooth."],
        ["Leave the batter to rest for {n} minutes.", "Let the batter stand for {n} minutes."],
        ["Heat a little butter in a frying pan.", "Melt a knob of butter in a hot pan."],
        ["Pour in a ladle of batter and cook for {n} minutes on each side.",
         "Cook each pancake for about {n} minutes, turning once."],
        ["Serve with a squeeze of {main}.", "Serve warm, with {main} on the side."],
    ],
}
RECIPE_TIPS = [
    "Tip: this {dish} keeps well in the freezer for up to {n} weeks.",
    "Tip: use the ripest {main} you can find for the best flavour.",
    "Tip: double the amounts and take the second {dish} to a neighbour on {street}.",
]

PRODUCTS = ["kettle", "bicycle", "headphones", "backpack", "desk lamp", "blender", "tent", "umbrella",
            "coffee grinder", "rain jacket", "toaster", "walking boots", "garden hose", "alarm clock"]
BRANDS = ["Brightline", "Northwood", "Acorn", "Kestrel", "Harbor", "Fenwick", "Larkspur", "Tidewell"]
REVIEW_CONTEXT = [
    "I bought the {product} in {month} from a shop on {street}.",
    "I have used it almost every day for {n} weeks now.",
    "My {relative} has the older model, so I knew roughly what to expect.",
    "It cost ${price}, which is about average for a {product} like this.",
    "I mostly use it at home, and sometimes when we go to {place}.",
]
REVIEW_POSITIVE = [
    "It works perfectly and feels solid in the hand.",
    "The {product} is excellent value for the money.",
    "Setting it up took less than {n} minutes, and the instructions were clear.",
    "I love how light it is compared with my old one.",
    "After {n} weeks it still looks and works like new.",
    "The design is simple and smart, and everything does what it should.",
    "Customer service answered my question within a day and were very friendly.",
    "It is the best {product} I have owned, and I would happily buy it again.",
    "It does exactly what the box promises, every single time.",
    "Everyone in the family enjoys using it.",
]
REVIEW_NEGATIVE = [
    "It broke after only {n} weeks, and the shop would not take it back.",
    "The {product} feels cheap and the plastic creaks when you touch it.",
    "I was very disappointed with how flimsy and awkward it is.",
    "The instructions were confusing, and one part was missing from the box.",
    "After {n} days a seam started to split, which is a serious problem.",
    "Customer service never answered my emails.",
    "It is a waste of money, and I regret buying it.",
    "The colour faded within a week, and the handle came loose.",
    "It stopped working the second time I used it.",
    "I would not recommend this {product} to anyone.",
]
VERDICT_POSITIVE = ["Highly recommended.", "A great buy: I am very happy with it.",
                    "Five stars from me, no doubts at all."]
VERDICT_NEGATIVE = ["Avoid this one.", "Not worth the money: I am sending it back.",
                    "A poor product that I cannot recommend."]

FORUM_TITLES = [
    "Does anyone know a good {job} near {street}?",
    "Parking at {place} during {event}?",
    "Lost {object} near {place}",
    "Best place for coffee in {town}?",
    "Noise from the building work on {street}",
    "Is {place} open on {day}s?",
    "Ideas for a rainy {day} with children",
    "Who remembers {place2} in {old_year}?",
]
FORUM_OPENINGS = [
    "Hi all, we moved to {street} {n} weeks ago and we are still finding our way around.",
    "I was at {place} on {day} and nobody seemed to know the answer.",
    "Any help would be great, my {relative} is visiting next {month}.",
    "I asked at the town hall but they told me to try here.",
    "Thanks in advance, this forum has been a great help since we arrived in {town}.",
]
FORUM_REPLIES = [
    "Try {name}, the {job} on {street}; {he} helped us last {month} and was very fair.",
    "We went to {place} last {day} and it was fine, just get there before {n} o'clock.",
    "I think the council page about {event} has the details, but it changes every year.",
    "My {relative} says {place2} is the best spot, and {she_he} has lived here for {n2} years.",
    "Same problem here on {street}, it has been going on for {n} weeks.",
    "Ask at the bakery on Mill Street, they know everything that happens in {town}.",
    "Welcome to {town}! You will love {event} if you are still here in {month}.",
    "Someone posted about this a while ago; the answer was to call the town hall before {n} o'clock.",
    "I remember it well: my {relative} used to take me to {place2} every {day}.",
    "Good question, I would like to know too.",
    "{first} at {place} can help, {he} is there most days after {n}.",
]
FORUM_SPAM = [  # {anchor} becomes a link to a spam page
    "Cheap {spam_item} online, best prices and fast delivery!!! Visit {anchor} now",
    "Make ${big} a week from home, no experience needed, details on {anchor}",
    "I found amazing deals on {spam_item} at {anchor}, highly recommended!!!",
    "BUY {spam_item_upper} NOW, 90% OFF TODAY ONLY at {anchor}",
]
SPAM_ANCHORS = ["my site", "this shop", "the deals page", "best-deals.example", "click here"]
SPAM_ITEMS = ["watches", "sunglasses", "handbags", "diet pills", "phone cases", "sneakers", "perfume"]
SPAM_KEYWORDS = ["cheap flights", "best price", "casino bonus", "buy now", "free shipping",
                 "discount watches", "weight loss pills", "online casino", "payday loans", "replica bags",
                 "cheap hotels", "win big", "limited offer", "click here", "top deals", "free spins"]

COMMENTS = [
    "Great article, thanks for sharing!",
    "I was there on {day} and it was lovely.",
    "My {relative} still talks about {event}.",
    "Does anyone know if {place} is open on Sundays?",
    "Well written, as always.",
    "I remember when {place2} was just a field.",
    "Thank you to all the volunteers!",
    "Shame about the weather, but what a day.",
]
SPAM_COMMENTS = [
    "Earn $5,000 a week working from home! Visit easy-money.example today.",
    "Cheap watches and bags, best prices online!!! Click my name.",
    "Nice post. I also write about diet pills, check my site!",
]

FOREIGN = {
    "fr": {
        "titles": ["Une belle journée à {lieu}", "{prenom} {nom}, {metier}, ouvre sa porte",
                   "La fête du village attire {big_plain} visiteurs"],
        "sentences": [
            "Samedi dernier, {prenom} {nom} a accueilli plus de {big_plain} visiteurs à {lieu}.",
            "Les enfants de l'école ont chanté {n} chansons devant la mairie.",
            "Selon la mairie, les travaux coûteront environ {big_plain} euros.",
            "{prenom} travaille comme {metier} à Millbrook depuis {n} ans.",
            "Il a plu toute la matinée, mais la place du marché était pleine dès {n} heures.",
            "« Nous n'avons jamais vu autant de monde », a déclaré {prenom2}.",
            "Les bénévoles ont planté {n} arbres le long de la rivière.",
            "Le nouveau bus passera toutes les {n} minutes entre la mairie et {lieu}.",
            "Les commerçants de la grande rue ont vendu tout leur pain avant {n} heures.",
            "La prochaine fête aura lieu en {mois}, comme chaque année.",
            "Un {metier} de la vallée voisine est venu aider pendant {n} jours.",
            "Les habitants se sont retrouvés autour de {n} grandes tables sur la place.",
        ],
        "lieux": ["la boulangerie", "la bibliothèque", "la place du marché", "le vieux moulin", "la gare"],
        "metiers": ["boulanger", "médecin", "professeur", "ingénieur", "pilote", "agriculteur", "peintre"],
        "mois": ["mai", "juin", "septembre", "octobre"],
    },
    "de": {
        "titles": ["Ein schöner Tag in {lieu}", "{prenom} {nom}, {metier}, öffnet die Türen",
                   "Das Dorffest lockt {big_plain} Besucher an"],
        "sentences": [
            "Am vergangenen Samstag begrüßte {prenom} {nom} mehr als {big_plain} Besucher in {lieu}.",
            "Die Kinder der Schule sangen {n} Lieder vor dem Rathaus.",
            "Laut der Stadtverwaltung kosten die Arbeiten etwa {big_plain} Euro.",
            "{prenom} arbeitet seit {n} Jahren als {metier} in Millbrook.",
            "Es regnete den ganzen Morgen, aber ab {n} Uhr war der Marktplatz voll.",
            "„So viele Menschen haben wir noch nie gesehen“, sagte {prenom2}.",
            "Die Freiwilligen pflanzten {n} Bäume am Fluss entlang.",
            "Der neue Bus fährt alle {n} Minuten zwischen dem Rathaus und {lieu}.",
            "Die Geschäfte in der Hauptstraße hatten vor {n} Uhr kein Brot mehr.",
            "Das nächste Fest findet wie jedes Jahr im {mois} statt.",
            "Ein {metier} aus dem Nachbartal half {n} Tage lang mit.",
            "Die Bewohner trafen sich an {n} langen Tischen auf dem Platz.",
        ],
        "lieux": ["der Bäckerei", "der Bibliothek", "der alten Mühle", "dem Bahnhof", "dem Park"],
        "metiers": ["Bäcker", "Arzt", "Lehrer", "Ingenieur", "Pilot", "Landwirt", "Maler"],
        "mois": ["Mai", "Juni", "September", "Oktober"],
    },
    "es": {
        "titles": ["Un día precioso en {lieu}", "{prenom} {nom}, {metier}, abre sus puertas",
                   "La fiesta del pueblo atrae a {big_plain} visitantes"],
        "sentences": [
            "El sábado pasado, {prenom} {nom} recibió a más de {big_plain} visitantes en {lieu}.",
            "Los niños de la escuela cantaron {n} canciones delante del ayuntamiento.",
            "Según el ayuntamiento, las obras costarán unos {big_plain} euros.",
            "{prenom} trabaja como {metier} en Millbrook desde hace {n} años.",
            "Llovió toda la mañana, pero la plaza del mercado estaba llena desde las {n}.",
            "«Nunca habíamos visto a tanta gente», dijo {prenom2}.",
            "Los voluntarios plantaron {n} árboles a lo largo del río.",
            "El nuevo autobús pasará cada {n} minutos entre el ayuntamiento y {lieu}.",
            "Las tiendas de la calle mayor vendieron todo el pan antes de las {n}.",
            "La próxima fiesta será en {mois}, como todos los años.",
            "Un {metier} del valle vecino vino a ayudar durante {n} días.",
            "Los vecinos se reunieron alrededor de {n} mesas largas en la plaza.",
        ],
        "lieux": ["la panadería", "la biblioteca", "el viejo molino", "la estación", "el parque"],
        "metiers": ["panadero", "médico", "profesor", "ingeniero", "piloto", "agricultor", "pintor"],
        "mois": ["mayo", "junio", "septiembre", "octubre"],
    },
}


# --------------------------------------------------------------------------------------------------
# Writing the text. A page's main content is a list of blocks:
#   ("h1", text) ("h2", text) ("p", text) ("p", text, (anchor, href)) ("ul", items) ("ol", items)
#   ("teaser", title, href, summary)  ("post", author, date, [paragraph, ...], [(anchor, href), ...])
# and its truth lines follow from the blocks (`block_lines`).


@dataclass
class Draft:
    path: str
    kind: str
    title: str
    blocks: list
    section: str = ""
    date: str = ""
    month: int = 0
    author: str = ""
    tags: list = field(default_factory=list)
    comments: list = field(default_factory=list)  # (author, text, reply href)
    labels: dict = field(default_factory=dict)
    lang: str = "en"
    extra_links: list = field(default_factory=list)  # (text, href) shown near the article, e.g. "Print"

    @property
    def summary(self) -> str:
        """The first sentence of the text, as index pages show it under the title."""
        for block in self.blocks:
            text = block[1] if block[0] == "p" else block[3][0] if block[0] == "post" else ""
            if len(text) >= 40:
                return re.split(r"(?<=[.!?])\s", text)[0]
        return self.title


def block_lines(blocks: list) -> list[str]:
    lines = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "p"):
            lines.append(block[1])
        elif kind in ("ul", "ol"):
            lines.extend(block[1])
        elif kind == "teaser":
            lines.append(block[3])
        elif kind == "post":
            lines.extend(block[3])
    return lines


def person(rng: random.Random) -> dict:
    """A townsperson from the world: first name, surname, job and gender (half women, half men)."""
    gender = rng.choice(GENDERS)
    return {"first": rng.choice(NAMES[gender]), "surname": rng.choice(SURNAMES), "job": rng.choice(JOBS), "gender": gender}


def slot_values(rng: random.Random) -> dict:
    """Fresh values for every slot a template may use."""
    p1, p2 = person(rng), person(rng)
    words1, words2 = pronouns(p1["gender"]), pronouns(p2["gender"])
    place, place2 = rng.sample(TOWN_PLACES, 2)
    event = rng.choice(EVENTS)
    return {
        "name": f"{p1['first']} {p1['surname']}", "first": p1["first"], "surname": p1["surname"],
        "job": p1["job"], "job_cap": p1["job"].capitalize(),
        "he": words1["he"], "He": words1["He"], "his": words1["his"], "him_her": words1["him"],
        "a_job": with_article(p1["job"]), "a_job2": with_article(p2["job"]),
        "A_job2": with_article(p2["job"]).capitalize(), "since_year": rng.randint(1985, 2018),
        "name2": f"{p2['first']} {p2['surname']}", "first2": p2["first"], "surname2": p2["surname"],
        "job2": p2["job"], "he2": words2["he"],
        "she_he": rng.choice(["she", "he"]),
        "place": place, "place2": place2, "street": rng.choice(STREETS), "event": event,
        "event_cap": event[0].upper() + event[1:], "object": with_article(f"{rng.choice(COLOURS)} {rng.choice(OBJECTS)}"),
        "feeling": rng.choice(GOOD_FEELINGS + BAD_FEELINGS), "relative": rng.choice(RELATIVES), "day": rng.choice(DAYS),
        "month": rng.choice(MONTHS), "town": TOWN, "old_year": rng.randint(1850, 1975),
        **_numbers(rng),
    }


def _numbers(rng: random.Random) -> dict:
    big = rng.randint(120, 9800)
    return {"n": rng.randint(2, 12), "n2": rng.randint(14, 90), "big": f"{big:,}", "big_plain": str(big),
            "price": f"{rng.randint(3, 180)}.{rng.choice(['00', '50', '99'])}",
            "minutes": rng.choice([20, 25, 30, 40, 45, 50, 60]), "temp": rng.choice([160, 180, 190, 200])}


class SentenceWriter:
    """Draws sentences from a pool without repeating one inside a page, with fresh numbers each time."""

    def __init__(self, rng: random.Random, pool: list[str], slots: dict):
        self.rng, self.slots = rng, slots
        self.order = rng.sample(pool, len(pool))
        self.next = 0

    def sentence(self) -> str:
        if self.next == len(self.order):  # pool used up: start again with other slot values
            self.rng.shuffle(self.order)
            self.next = 0
            self.slots = {**self.slots, **slot_values(self.rng)}
        template = self.order[self.next]
        self.next += 1
        return template.format(**{**self.slots, **_numbers(self.rng)})

    def paragraph(self, low: int = 2, high: int = 4) -> str:
        return " ".join(self.sentence() for _ in range(self.rng.randint(low, high)))


def publication_date(rng: random.Random, months: int) -> tuple[str, int]:
    month = rng.randrange(months)
    return f"{rng.randint(1, 28)} {MONTHS[month]} 2024", month


def slugify(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:60].strip("-")


def write_news(rng: random.Random, path_prefix: str = "/news/") -> Draft:
    slots = slot_values(rng)
    title = rng.choice(NEWS_TITLES).format(**slots)
    writer, quotes = SentenceWriter(rng, NEWS_SENTENCES, slots), SentenceWriter(rng, QUOTES, slots)
    blocks: list = [("h1", title), ("p", writer.paragraph(1, 2))]
    for i in range(rng.randint(3, 8)):
        if i == 2 and rng.random() < 0.6:
            blocks.append(("h2", rng.choice(SUBHEADINGS).format(**slots)))
        if rng.random() < 0.3:
            speaker = rng.choice([slots["first"], slots["name2"]])
            blocks.append(("p", f'"{quotes.sentence()}," said {speaker}. {writer.sentence()}'))
        else:
            text = writer.paragraph()
            if rng.random() < 0.25:  # an inline link inside the text, as real articles have
                blocks.append(("p", text, (TOWN, "/tag/community/")) if TOWN in text else ("p", text))
            else:
                blocks.append(("p", text))
    author = f"{rng.choice(ALL_NAMES)} {rng.choice(SURNAMES)}"
    return Draft(path="", kind="news", title=title, blocks=blocks, section="news", author=author)


def write_blog(rng: random.Random) -> Draft:
    slots = slot_values(rng)
    title = rng.choice(BLOG_TITLES).format(**slots)
    writer = SentenceWriter(rng, BLOG_SENTENCES, slots)
    blocks: list = [("h1", title)] + [("p", writer.paragraph(2, 4)) for _ in range(rng.randint(3, 7))]
    if rng.random() < 0.4:
        blocks.insert(3, ("h2", rng.choice(["A few photos", "The walk home", "What I will do next time", "Thank you"])))
    return Draft(path="", kind="blog", title=title, blocks=blocks, section="blog",
                  author=f"{slots['first']} of {slots['street']}")


def write_recipe(rng: random.Random) -> Draft:
    slots = slot_values(rng)
    dish = rng.choice(sorted(DISHES))
    method, ingredients, main = DISHES[dish]
    title = f"{rng.choice(DISH_STYLES)} {dish}"
    others = [i for i in ingredients if i != main]
    context = {**slots, "dish": dish, "main": main, "first_ing": others[0], "second_ing": others[1]}
    intro = SentenceWriter(rng, RECIPE_INTROS, context)
    steps = [rng.choice(stage).format(**{**context, **_numbers(rng)}) for stage in RECIPE_METHODS[method]]
    blocks: list = [
        ("h1", title),
        ("p", intro.paragraph(2, 3)),
        ("h2", "Ingredients"),
        ("ul", [rng.choice(AMOUNTS[item]) for item in ingredients]),
        ("h2", "Method"),
        ("ol", steps),
    ]
    if rng.random() < 0.5:
        blocks.append(("p", rng.choice(RECIPE_TIPS).format(**{**context, **_numbers(rng)})))
    return Draft(path="", kind="recipe", title=title, blocks=blocks, section="recipes", author=slots["name"])


def write_review(rng: random.Random) -> Draft:
    slots = slot_values(rng)
    rating = rng.choice([1, 2, 4, 5])
    positive = rating >= 4
    product = rng.choice(PRODUCTS)
    brand = rng.choice(BRANDS)
    context = {**slots, "product": product}
    opinion = SentenceWriter(rng, REVIEW_POSITIVE if positive else REVIEW_NEGATIVE, context)
    setting = SentenceWriter(rng, REVIEW_CONTEXT, context)
    body = [f"{setting.sentence()} {opinion.sentence()} {opinion.sentence()}"]
    body += [" ".join(opinion.sentence() for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(1, 3))]
    verdict = rng.choice(VERDICT_POSITIVE if positive else VERDICT_NEGATIVE)
    title = f"Review: the {brand} {product}"
    blocks = [("h1", title), ("p", f"Rating: {rating} out of 5 stars")] + [("p", t) for t in body]
    blocks += [("h2", "Verdict"), ("p", verdict)]
    labels = {"rating": rating, "sentiment": "positive" if positive else "negative",
              "product": f"{brand} {product}", "review": "\n".join(body + [verdict])}
    return Draft(path="", kind="review", title=title, blocks=blocks, section="reviews",
                  author=slots["name"], labels=labels)


def write_forum(rng: random.Random, spam_targets: list[str]) -> Draft:
    slots = slot_values(rng)
    title = rng.choice(FORUM_TITLES).format(**slots)
    openings = SentenceWriter(rng, FORUM_OPENINGS, slots)
    replies = SentenceWriter(rng, FORUM_REPLIES, slots)

    def user() -> str:
        return f"{rng.choice(ALL_NAMES).lower()}_{rng.choice(SURNAMES)[0].lower()}{rng.randint(1, 99)}"

    date, _ = publication_date(rng, 12)
    posts = [("post", user(), date, [openings.sentence() + " " + openings.sentence()], [])]
    spam_lines = []
    for _ in range(rng.randint(2, 6)):
        if rng.random() < 0.25:
            item, anchor = rng.choice(SPAM_ITEMS), rng.choice(SPAM_ANCHORS)
            line = rng.choice(FORUM_SPAM).format(spam_item=item, spam_item_upper=item.upper(),
                                                 anchor=anchor, **_numbers(rng))
            spam_lines.append(line)
            posts.append(("post", user(), date, [line], [(anchor, rng.choice(spam_targets))]))
        else:
            posts.append(("post", user(), date, [replies.paragraph(1, 2)], []))
    labels = {"boilerplate_lines": spam_lines, "defects": ["boilerplate"]} if spam_lines else {}
    return Draft(path="", kind="forum", title=title, blocks=[("h1", title)] + posts, section="forum",
                  author=posts[0][1], labels=labels)


def write_foreign(rng: random.Random, lang: str) -> Draft:
    words = FOREIGN[lang]
    slots = {"prenom": rng.choice(ALL_NAMES), "prenom2": rng.choice(ALL_NAMES), "nom": rng.choice(SURNAMES),
             "metier": rng.choice(words["metiers"]), "lieu": rng.choice(words["lieux"]),
             "mois": rng.choice(words["mois"])}
    title = rng.choice(words["titles"]).format(**slots, **_numbers(rng))
    writer = SentenceWriter(rng, words["sentences"], slots)
    blocks: list = [("h1", title)] + [("p", writer.paragraph(2, 3)) for _ in range(rng.randint(3, 5))]
    # A page in a language the course trains on is text to keep; in any other, a page to remove.
    return Draft(path="", kind="foreign", title=title, blocks=blocks, section="news", lang=lang,
                  labels={"defects": [] if lang in LANGUAGES else ["foreign"], "language": lang})


def write_spam(rng: random.Random) -> Draft:
    title = " ".join(rng.sample(SPAM_KEYWORDS, 4)).capitalize()
    paragraphs = []
    for _ in range(rng.randint(3, 5)):
        words = [rng.choice(SPAM_KEYWORDS) for _ in range(rng.randint(12, 25))]
        paragraphs.append(" ".join(words).capitalize() + rng.choice(["!!!", "!", " $$$", "."]))
    blocks: list = [("h1", title)] + [("p", p) for p in paragraphs]
    return Draft(path="", kind="spam", title=title, blocks=blocks, section="",
                  labels={"defects": ["low_quality"], "quality_kind": "keyword_spam"})


def near_copy(original: list[str], start: list[str], rng: random.Random,
               low: float = 0.65, high: float = 0.95) -> list[str]:
    """Edit `start` (a copy of `original`, maybe with lines added) until its 5-word-shingle Jaccard with
    the original falls to a target in [low, high]: change words, drop a line, add a line."""
    target = rng.uniform(low + 0.1, high - 0.03)
    before = dedup.shingles("\n".join(original))
    copy = list(start)
    swaps = {"said": "told reporters", "new": "brand new", "town": "village", "people": "residents",
             "children": "pupils", "council": "local council", "day": "afternoon", "small": "little",
             "money": "funds", "work": "job", "best": "finest", "old": "former", "family": "household"}
    additions = ["Update: an earlier version of this story gave the wrong date.",
                 "This story first appeared in the Millbrook Gazette.",
                 f"Additional reporting by {rng.choice(ALL_NAMES)} {rng.choice(SURNAMES)}."]
    for _ in range(300):
        if dedup.true_jaccard(before, dedup.shingles("\n".join(copy))) <= target:
            break
        candidate = list(copy)
        action = rng.random()
        if action < 0.6:  # change a word: a synonym, or a number
            spots = [(i, k) for i, line in enumerate(candidate) for k, w in enumerate(line.split(" "))
                     if i > 0 and (w in swaps or w.isdigit())]
            if not spots:
                continue
            i, k = rng.choice(spots)
            words = candidate[i].split(" ")
            words[k] = swaps.get(words[k]) or str(int(words[k]) + rng.randint(1, 9))
            candidate[i] = " ".join(words)
        elif action < 0.8 and len(candidate) > 4:
            del candidate[rng.randrange(1, len(candidate))]
        else:
            candidate.insert(rng.randrange(1, len(candidate) + 1), rng.choice(additions))
        if dedup.true_jaccard(before, dedup.shingles("\n".join(candidate))) >= low:
            copy = candidate
    return copy
